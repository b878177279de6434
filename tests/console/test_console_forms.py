"""The structured editor: a form changes only what it shows, and the review of the
result is the proposal's own validation."""

from __future__ import annotations

import pytest
import yaml

from ratemw.control.errors import InvalidRequest
from ratemw.control.ui import forms
from ratemw.control.ui.answers import Form
from ratemw.control.ui.drafts import check, draft_changes
from ratemw.control.versions import Version

BASE = b"""version: 1
tiers: [free, pro]
allow: ["127.0.0.1"]
rules:
  - name: login
    match: {methods: [POST], path: /login}
    limit: 5/minute
    lease: {size: 1}
    penalty: {after: 20/minute, ban: 15m}
"""


def version(document: bytes = BASE) -> Version:
    return Version(1, "", "yaml", document, "alice", "", "", "enforced")


def form(**fields: str | list[str]) -> Form:
    return Form({k: v if isinstance(v, list) else [v] for k, v in fields.items()})


def test_editing_a_rule_keeps_what_the_form_does_not_show() -> None:
    data, fmt = forms.base_data(version())
    assert forms.rule_fields(data, "login")["methods"] == ["POST"]
    edited = form(original="login", name="login", path="/login", methods=["POST"],
                  limit_free="3/minute", limit_pro="30/minute, 500/hour")  # fmt: skip
    name = forms.apply_rule(data, edited, ["free", "pro"])
    assert name == "login"
    (rule,) = yaml.safe_load(forms.dump(data, fmt))["rules"]
    assert rule == {"name": "login", "lease": {"size": 1},
                    "penalty": {"after": "20/minute", "ban": "15m"},
                    "match": {"methods": ["POST"], "path": "/login"},
                    "limit": {"free": "3/minute", "pro": ["30/minute", "500/hour"]}}  # fmt: skip
    checked = check(forms.dump(data, fmt), fmt)
    assert checked.ruleset is not None, checked.problems
    before = check(BASE, "yaml").ruleset
    assert any("login" in line for line in draft_changes(before, checked.ruleset) or [])


def test_adding_and_removing_rules() -> None:
    data, fmt = forms.base_data(version())
    forms.apply_rule(data, form(name="api", path="/api/**", identity="tenant ip",
                                concurrency="4", mode="shadow"), [])  # fmt: skip
    added = yaml.safe_load(forms.dump(data, fmt))["rules"][1]
    assert added == {"name": "api", "match": {"path": "/api/**"}, "identity": ["tenant", "ip"],
                     "concurrency": 4, "mode": "shadow"}  # fmt: skip
    forms.apply_rule(data, form(original="login", remove="1"), [])
    assert [r["name"] for r in data["rules"]] == ["api"]
    with pytest.raises(InvalidRequest):
        forms.apply_rule(data, form(original="login", remove="1"), [])
    for bad in ({"name": ""}, {"name": "x", "concurrency": "two"}, {"name": "x", "mode": "off"}):
        with pytest.raises(InvalidRequest):
            forms.apply_rule(data, form(**bad), [])


def test_the_lists_form_replaces_tiers_allow_and_deny() -> None:
    data, fmt = forms.base_data(version())
    forms.apply_lists(data, form(tiers="free, basic pro", allow="", deny="203.0.113.0/24\r\n"))
    out = yaml.safe_load(forms.dump(data, fmt))
    assert out["tiers"] == ["free", "basic", "pro"] and out["deny"] == ["203.0.113.0/24"]
    assert "allow" not in out
    assert check(forms.dump(data, fmt), fmt).ruleset is not None


def test_problems_keep_their_line_and_column() -> None:
    checked = check(b"version: 1\nrules:\n  - name: x\n    match: {path: /x}\n    limit: 0/s\n",
                    "yaml")  # fmt: skip
    assert checked.ruleset is None and checked.errors >= 1
    assert {(p.line, p.column) for p in checked.problems} >= {(5, 12)}
    assert check(b"rules: []", "xml").problems[0].reason == "unknown format 'xml'"
