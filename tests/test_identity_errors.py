"""A user getter or tier resolver that raises switches off no rule (issue #16, bug 1):
the rules that need the value fall back (``on_identity_error``), the failure is logged
once per cause, and the rest decide as usual."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ratemw import ConfigError, Limiter, RequestInfo, errors, load_ruleset
from ratemw.errors import MAX_IDENTITY_CAUSES, log_identity_failure
from ratemw.request import USER_UNRESOLVED, unresolved_user
from ratemw.testing import ManualClock


@pytest.fixture(autouse=True)
def fresh_causes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Causes are remembered per process: each test starts with none seen."""
    monkeypatch.setattr(errors, "_causes", set())


def rules(**user_rule: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "tiers": ["free", "pro"],
        "rules": [
            {"name": "by-ip", "match": {"path": "/ip"}, "limit": "2/minute"},
            {"name": "by-user", "match": {"path": "/user"}, "identity": "user",
             "limit": "2/minute", **user_rule},
            {"name": "tiered", "match": {"path": "/tiered"},
             "limit": {"free": "1/minute", "pro": "5/minute"}},
        ],
    }  # fmt: skip


def failed(path: str, peer: str = "198.51.100.1") -> RequestInfo:
    return RequestInfo(path=path, peer=peer, user=USER_UNRESOLVED)


def statuses(limiter: Limiter, info: RequestInfo, n: int) -> list[int]:
    return [limiter.decide(info).status for _ in range(n)]


def test_a_failed_user_falls_back_to_the_client_address(clock: ManualClock) -> None:
    limiter = Limiter(rules(), clock=clock)
    assert statuses(limiter, failed("/user"), 3) == [200, 200, 429]
    # keyed by the address: another client is not limited with the first
    assert statuses(limiter, failed("/user", "198.51.100.2"), 1) == [200]
    # and an ip rule decides as always
    assert statuses(limiter, failed("/ip"), 3) == [200, 200, 429]


def test_on_identity_error_skip_lets_the_rule_pass(clock: ManualClock) -> None:
    limiter = Limiter(rules(on_identity_error="skip"), clock=clock)
    assert statuses(limiter, failed("/user"), 4) == [200] * 4
    # an anonymous request (no user, no failure) still falls back to the address
    anonymous = RequestInfo(path="/user", peer="198.51.100.1")
    assert statuses(limiter, anonymous, 3) == [200, 200, 429]


def test_on_identity_error_is_a_default_and_is_validated(clock: ManualClock) -> None:
    data = rules()
    data["defaults"] = {"on_identity_error": "skip"}
    limiter = Limiter(data, clock=clock)
    assert limiter.snapshot.ruleset.rules[1].on_identity_error == "skip"
    assert statuses(limiter, failed("/user"), 3) == [200] * 3
    with pytest.raises(ConfigError, match="on_identity_error"):
        Limiter(rules(on_identity_error="reject"), clock=clock)


def test_on_identity_error_in_a_rules_file(tmp_path: Any) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\ndefaults: {on_identity_error: skip}\nrules:\n"
        "  - {name: a, match: {path: /a}, identity: user, limit: 1/minute,"
        " on_identity_error: ip}\n"
    )
    assert load_ruleset(path).rules[0].on_identity_error == "ip"
    assert load_ruleset(path).defaults.on_identity_error == "skip"


def test_a_raising_tier_resolver_gives_the_default_tier_logged_once(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    def resolver(info: RequestInfo) -> str | None:
        raise LookupError("plan service down")

    limiter = Limiter(rules(), clock=clock, tier_resolver=resolver)
    info = RequestInfo(path="/tiered", peer="198.51.100.9")
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        assert statuses(limiter, info, 3) == [200, 429, 429]  # free: 1/minute
        assert statuses(limiter, RequestInfo(path="/ip", peer="198.51.100.9"), 1) == [200]
    lines = [r.getMessage() for r in caplog.records if "tier resolver" in r.getMessage()]
    assert len(lines) == 1, lines
    assert "LookupError" in lines[0] and "default tier" in lines[0]
    assert "plan service down" not in caplog.text  # the message may quote request data


def test_unresolved_user_is_logged_once_per_cause(caplog: pytest.LogCaptureFixture) -> None:
    def getter_a() -> None:
        raise AttributeError("no login_manager")

    def getter_b() -> None:
        raise KeyError("session")

    with caplog.at_level(logging.ERROR, logger="ratemw"):
        for getter in (getter_a, getter_a, getter_b, getter_a, getter_b):
            try:
                getter()
            except Exception as exc:
                assert unresolved_user(exc, "test getter") is USER_UNRESOLVED
    lines = [r.getMessage() for r in caplog.records if "test getter" in r.getMessage()]
    assert len(lines) == 2, lines
    assert any("AttributeError" in line for line in lines)
    assert any("KeyError" in line for line in lines)


def test_the_set_of_causes_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    source = "bounded test source"
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        for n in range(MAX_IDENTITY_CAUSES + 50):
            # a distinct exception type per iteration: a distinct cause each
            kind = type(f"Failure{n}", (Exception,), {})
            try:
                raise kind()
            except Exception as exc:
                log_identity_failure(exc, source, "falls back")
    logged = [r for r in caplog.records if source in r.getMessage()]
    assert len(logged) <= MAX_IDENTITY_CAUSES
    assert "further ones are not" in caplog.text
