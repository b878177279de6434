from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ratemw.cli import main
from ratemw.config import diff_rulesets, format_diff
from ratemw.rules.parse import ruleset_from_data


def rules(*entries: dict[str, Any], **top: Any) -> Any:
    return ruleset_from_data({"version": 1, **top, "rules": list(entries)})


def rule(name: str, limit: Any = "10/minute", **more: Any) -> dict[str, Any]:
    return {"name": name, "match": {"path": f"/{name}"}, "limit": limit, **more}


def test_equal_rule_sets_have_no_difference() -> None:
    assert not diff_rulesets(rules(rule("a")), rules(rule("a")))


def test_added_removed_raised_lowered() -> None:
    old = rules(rule("keep", "10/second; 100/minute"), rule("gone"), rule("same"))
    new = rules(rule("keep", "20/second; 50/minute"), rule("new", "5/minute"), rule("same"))
    diff = diff_rulesets(old, new)
    assert [r.name for r in diff.added] == ["new"]
    assert [r.name for r in diff.removed] == ["gone"]
    (change,) = diff.changed
    assert [(c.before, c.after, c.change) for c in change.limits] == [
        ("10/second", "20/second", "raised"),
        ("100/minute", "50/minute", "lowered"),
    ]
    assert [name for name, _ in diff.lowered] == ["keep"]
    assert format_diff(diff) == [
        "+ rule 'new' added (5/minute)",
        "- rule 'gone' removed (10/minute)",
        "~ rule 'keep': rate raised: 10/second -> 20/second",
        "~ rule 'keep': rate lowered: 100/minute -> 50/minute",
    ]


def test_tiers_periods_burst_concurrency_and_other_fields() -> None:
    old = rules(
        rule("t", {"free": "10/minute", "pro": "100/minute"}),
        rule("p", "10/second", burst=20),
        {"name": "c", "match": {"path": "/c"}, "concurrency": 4},
        tiers=["free", "pro"],
    )
    new = rules(
        rule("t", {"free": "5/minute", "pro": ["100/minute", "5000/day"]}, identity="user"),
        rule("p", "1200/minute", burst=10),  # the same 20/s over another period
        {"name": "c", "match": {"path": "/c"}, "concurrency": 8},
        tiers=["free", "pro"],
        deny=["ip:192.0.2.1"],
    )
    lines = format_diff(diff_rulesets(old, new))
    assert lines == [
        "~ rule 't': rate for tier 'free' lowered: 10/minute -> 5/minute",
        "~ rule 't': rate for tier 'pro' 5000/day added",
        "~ rule 't': changed identity",
        "~ rule 'p': rate raised: 10/second -> 1200/minute",
        "~ rule 'p': burst lowered: 20 -> 10",
        "~ rule 'c': concurrency raised: 4 -> 8",
        "~ deny changed",
    ]


def test_cli_diff(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("version: 1\nrules:\n  - {name: api, match: {path: /api}, limit: 10/minute}\n")
    b.write_text("version: 1\nrules:\n  - {name: api, match: {path: /api}, limit: 5/minute}\n")
    out = io.StringIO()
    assert main(["diff", str(a), str(b)], out=out) == 0
    assert out.getvalue().splitlines() == [
        "~ rule 'api': rate lowered: 10/minute -> 5/minute",
        "0 added, 0 removed, 1 changed (1 limit(s) lowered, 0 raised)",
    ]
    assert main(["diff", "--exit-code", str(a), str(b)], out=io.StringIO()) == 1
    out = io.StringIO()
    assert main(["diff", str(a), str(a)], out=out) == 0
    assert "no differences" in out.getvalue()
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: api, match: {path: /api}, limit: 0/minute}\n")
    out = io.StringIO()
    assert main(["diff", str(a), str(bad)], out=out) == 1  # a runtime error (docs/api.md)
    assert f"{bad}:3:" in out.getvalue()
    out = io.StringIO()
    assert main(["diff", str(a), str(tmp_path / "none.yaml")], out=out) == 1
