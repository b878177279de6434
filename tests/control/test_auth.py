from __future__ import annotations

import json
from pathlib import Path

import pytest

from ratemw.control import ControlError
from ratemw.control.auth import (
    ENV_VAR,
    PERMISSIONS,
    Principal,
    TokenTable,
    bearer_token,
    load_tokens,
    new_token,
    token_digest,
)


def test_digests_not_tokens_are_stored() -> None:
    table = TokenTable({token_digest("s3cret"): Principal("alice", "editor")})
    assert table.authenticate("s3cret") == Principal("alice", "editor")
    assert table.authenticate("s3cret ") is None
    assert table.authenticate("") is None and table.authenticate(None) is None
    assert "s3cret" not in repr(table._entries)
    assert token_digest("s3cret").startswith("sha256:") and len(token_digest("x")) == 71


def test_a_yaml_file_and_the_environment_are_merged(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "tokens:\n"
        f'  "{token_digest("a")}": {{principal: alice, role: editor}}\n'
        f"  {token_digest('b').removeprefix('sha256:')}: {{principal: bob, role: approver}}\n"
    )
    env = {ENV_VAR: json.dumps({token_digest("c"): {"principal": "carol", "role": "admin"}})}
    table = load_tokens(path, env)
    assert len(table) == 3
    assert table.authenticate("b") == Principal("bob", "approver")
    assert table.authenticate("c") == Principal("carol", "admin")
    assert len(load_tokens(None, env)) == 1
    assert len(load_tokens(None, {})) == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: [1, 2]", "want a mapping"),
        ('"sha256:abc": {principal: a, role: admin}', "not a token digest"),
        (f'"{token_digest("a")}": {{principal: a, role: root}}', "unknown role 'root'"),
        (f'"{token_digest("a")}": {{principal: a}}', "want {principal: NAME, role: ROLE}"),
        (f'"{token_digest("a")}": {{principal: a, role: admin, x: 1}}', "want {principal"),
        ("tokens: [", "not YAML or JSON"),
    ],
)
def test_bad_token_files_are_refused(text: str, message: str) -> None:
    with pytest.raises(ControlError, match=message.replace("{", r"\{")):
        TokenTable.from_text(text, "tokens.yaml")


def test_a_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="cannot read the tokens file"):
        load_tokens(tmp_path / "nope.yaml", {})


def test_bearer_header() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer   abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_roles() -> None:
    allowed = {
        role: {p for p in PERMISSIONS if Principal("x", role).may(p)}
        for role in ("viewer", "editor", "approver", "admin")
    }
    assert allowed == {
        "viewer": {"read"},
        "editor": {"read", "propose"},
        "approver": {"read", "approve"},
        "admin": {"read", "propose", "approve", "deploy"},
    }


def test_new_tokens_are_random_and_long() -> None:
    first, second = new_token(), new_token()
    assert first != second and len(first) > 40
