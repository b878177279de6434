from __future__ import annotations

from typing import Any

import pytest

from ratemw.request import RequestInfo
from ratemw.rules.compile import compile_rules
from ratemw.rules.matcher import PathIndex
from ratemw.rules.parse import ruleset_from_data
from ratemw.rules.paths import parse_path


def snapshot(*rules: dict[str, Any], **top: Any):
    for r in rules:
        r.setdefault("limit", "1/second")
    return compile_rules(ruleset_from_data({"version": 1, "rules": list(rules), **top}))


def names(snap, **kw: Any) -> list[str]:
    return [r.name for r in snap.match(RequestInfo(**kw))]


PATTERNS = [
    "/login",
    "/api/reports/{id}",
    "/api/*/x",
    "/api/**",
    "/search/**",
    "re:/v[0-9]+/.*",
    "/",
    "/**",
]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/login", [0, 7]),
        ("/login/", [0, 7]),  # a trailing slash is not a different path (docs/rules.md)
        ("//login", [0, 7]),
        ("/x/../login", [0, 7]),
        ("/login\n", [0, 7]),
        ("/api//reports/7/", [1, 3, 7]),
        ("/v2/../search/q", [4, 5, 7]),  # either form may be the one a router serves
        ("/api/reports/7", [1, 3, 7]),
        ("/api/reports/7/more", [3, 7]),
        ("/api/y/x", [2, 3, 7]),
        ("/api", [3, 7]),  # "**" matches zero segments
        ("/search/a/b/c", [4, 7]),
        ("/v2/things", [5, 7]),
        ("/vx/things", [7]),
        ("/", [6, 7]),
    ],
)
def test_path_index(path: str, expected: list[int]) -> None:
    index = PathIndex((i, parse_path(p)) for i, p in enumerate(PATTERNS))
    assert list(index.lookup(path)) == expected
    assert list(index.lookup(path)) == expected  # memoised answer is the same
    for i, pattern in enumerate(PATTERNS):  # the trie agrees with the reference matcher
        assert parse_path(pattern).matches(path) == (i in expected), (pattern, path)


def test_memo_is_bounded() -> None:
    index = PathIndex([(0, parse_path("/a/*"))])
    for i in range(25_000):
        assert index.lookup(f"/a/{i}") == (0,)
    assert len(index._memo) <= 10_000


def test_conditions_and_rule_order() -> None:
    snap = snapshot(
        {"name": "post", "match": {"path": "/x", "methods": ["POST"]}},
        {"name": "host", "match": {"path": "/x", "host": "api.example.com"}},
        {"name": "wild", "match": {"path": "/x", "host": "*.example.org"}},
        {"name": "hdr", "match": {"path": "/x", "headers": {"X-Partner": "*"}}},
        {"name": "val", "match": {"path": "/x", "headers": {"X-Env": "prod"}}},
        {"name": "route", "match": {"route": "search"}},
        {"name": "all", "match": {"path": "/x"}, "identity": "user"},
    )
    assert names(snap, method="GET", path="/x") == ["all"]
    assert names(snap, method="POST", path="/x") == ["post", "all"]
    assert names(snap, path="/x", host="API.example.com:8443") == ["host", "all"]
    assert names(snap, path="/x", host="a.b.example.org") == ["wild", "all"]
    assert names(snap, path="/x", headers={"x-partner": ""}) == ["hdr", "all"]
    assert names(snap, path="/x", headers={"x-env": "dev"}) == ["all"]
    assert names(snap, path="/x", headers={"x-env": "prod"}) == ["val", "all"]
    assert names(snap, path="/elsewhere", route="search") == ["route"]


def test_overrides_resolved_at_compile_time() -> None:
    snap = snapshot(
        {"name": "api", "match": {"path": "/api/**"}, "identity": "tenant"},
        {
            "name": "partner",
            "match": {"path": "/api/**", "headers": {"X-Partner": "*"}},
            "identity": "api_key",
            "overrides": ["api"],
        },
    )
    api, partner = snap.rules
    assert partner.overrides == frozenset({api.index})
    assert names(snap, path="/api/a") == ["api"]
    assert names(snap, path="/api/a", headers={"x-partner": "p"}) == ["partner"]


def test_snapshot_version_is_a_content_digest() -> None:
    a = snapshot({"name": "a", "match": {"path": "/a"}})
    b = snapshot({"name": "a", "match": {"path": "/a"}})
    c = snapshot({"name": "a", "match": {"path": "/a"}, "limit": "2/second"})
    assert a.version == b.version != c.version
    assert len(a.version) == 64


def test_tiered_rule_compiles_one_policy_per_tier_and_rate() -> None:
    snap = snapshot(
        {
            "name": "s",
            "match": {"path": "/s"},
            "limit": {"free": ["1/second", "10/minute"], "pro": "5/second"},
        },
        tiers=["free", "pro"],
    )
    (rule,) = snap.rules
    assert [p.name for p in rule.policies_for("free")] == ["s", "s.1"]
    assert [p.rate.count for p in rule.policies_for("pro")] == [5]
    assert rule.policies_for("gold") == ()
    assert snap.needs_tier and snap.default_tier == "free"
