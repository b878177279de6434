from __future__ import annotations

import re

import pytest

from ratemw.store._keys import DIGEST_CHARS, KeyBuilder, safe_name

HOSTILE = [
    "plain",
    "{brace}",
    "}{",
    "a}b{c",
    "nul\x00byte",
    "x" * 65536,
    "\udcff\ud800 lone surrogates",
    "emoji 🙂",
    b"\xff\xfe raw bytes",
    ("tuple", "{key}"),
    "",
]


def _tag(key: str) -> str:
    assert key.count("{") == 1
    assert key.count("}") == 1
    match = re.search(r"\{([^{}]*)\}", key)
    assert match is not None
    return match.group(1)


@pytest.mark.parametrize("identity", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_identity_gives_constant_length_and_one_tag(identity: object) -> None:
    builder = KeyBuilder("app", hash_key="secret")
    key = builder.key("login", identity, "g")
    reference = builder.key("login", "plain", "g")
    assert len(key) == len(reference)
    assert key.startswith("ratemw:app:{login|")
    assert key.endswith("}:g")
    assert len(_tag(key).split("|")[1]) == DIGEST_CHARS
    assert key.isascii()
    assert "\x00" not in key


def test_raw_secret_never_in_key() -> None:
    secret = "sk_live_0123456789abcdef"
    key = KeyBuilder("app", hash_key="k").key("api", secret, "g")
    assert secret not in key
    assert "0123456789" not in key


def test_digest_is_keyed_and_stable() -> None:
    a = KeyBuilder("app", hash_key="one").key("p", "id", "g")
    assert a == KeyBuilder("app", hash_key="one").key("p", "id", "g")
    assert a != KeyBuilder("app", hash_key="two").key("p", "id", "g")
    long_key = "k" * 200  # longer than BLAKE2b allows: condensed, not rejected
    assert KeyBuilder("app", hash_key=long_key).key("p", "id", "g") != a


def test_hash_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RATEMW_HASH_KEY", "from-env")
    assert KeyBuilder("a").key("p", "i", "g") == KeyBuilder("a", hash_key="from-env").key(
        "p", "i", "g"
    )


def test_identity_types_do_not_collide() -> None:
    builder = KeyBuilder()
    assert builder.key("p", "1", "g") != builder.key("p", 1, "g")


@pytest.mark.parametrize("policy", ["{x}", "a}b", "a:b", "x" * 500, "sp ace", "\x00", ""])
def test_policy_ids_are_sanitised(policy: str) -> None:
    key = KeyBuilder("app").key(policy, "id", "g")
    _tag(key)
    name = safe_name(policy)
    assert not set("{}:") & set(name)
    assert len(name) <= 64


def test_sanitised_policy_ids_do_not_collide() -> None:
    assert safe_name("a{b") != safe_name("a_b")
    assert safe_name("a{b") != safe_name("a}b")
    assert safe_name("login") == "login"


def test_app_with_braces_cannot_add_a_tag() -> None:
    builder = KeyBuilder("{evil}")
    _tag(builder.key("p", "i", "g"))
    assert builder.procs().endswith("{meta}:procs")
    _tag(builder.procs())
