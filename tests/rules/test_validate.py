from __future__ import annotations

from pathlib import Path

import pytest

from ratemw.errors import Problem
from ratemw.rules.model import (
    Defaults,
    IdentityConfig,
    JWTConfig,
    LeaseConfig,
    Match,
    Rate,
    Rollout,
    Rule,
    RuleSet,
)
from ratemw.rules.parse import load_ruleset, parse_ruleset
from ratemw.rules.validate import validate

HERE = Path(__file__).parent


def check(text: str) -> list[Problem]:
    _, problems = parse_ruleset("version: 1\n" + text, "rules.yaml")
    return problems


def reasons(text: str, severity: str = "error") -> list[str]:
    return [p.reason for p in check(text) if p.severity == severity]


def rule(name: str, **kw: object) -> Rule:
    kw.setdefault("match", Match(path="/" + name))
    kw.setdefault("identity", ("ip",))
    kw.setdefault("limit", (Rate(10, 1.0, "10/second"),))
    return Rule(name=name, **kw)  # type: ignore[arg-type]


def test_example_is_clean() -> None:
    ruleset = load_ruleset(HERE / "good" / "example.yaml")
    assert validate(ruleset) == []


def test_warnings_file() -> None:
    path = HERE / "warnings.yaml"
    ruleset, problems = parse_ruleset(path.read_text(), str(path))
    assert ruleset is not None  # warnings alone do not reject the file
    assert [(p.line, p.severity) for p in problems] == [
        (6, "warning"), (10, "warning"), (12, "warning"),
    ]  # fmt: skip
    assert "rule 'slow-refill': burst 5 is more than one day of limit '1/day'" in problems[0].reason
    assert (
        "rule 'monthly': sliding window of '1000/month' is longer than a day" in problems[1].reason
    )
    assert problems[2].reason == (
        "rule 'api': can never apply: rule 'api-all' (line 15) overrides it wherever it matches"
    )


# -- conflicts ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("second", "conflict"),
    [
        ("match: {path: '/search/**'}, identity: user, limit: 5/second, mode: shadow", False),
        ("match: {path: '/search/**'}, identity: user, limit: 5/second", True),
        ("match: {path: '/search/**'}, identity: user, limit: {free: 5/second}", True),
        ("match: {path: '/search/**'}, identity: tenant, limit: 5/second", False),
        ("match: {path: '/search/**'}, identity: user, concurrency: 3", False),
        # b replaces a where it matches: not a conflict (but a warning that a never applies)
        ("match: {path: '/search/**'}, identity: user, limit: 5/second, overrides: [a]", False),
        ("match: {path: '/search/**', methods: [GET]}, identity: user, limit: 5/second", False),
        ("match: {path: '/search/*'}, identity: user, limit: 5/second", False),
    ],
)
def test_conflicts(second: str, conflict: bool) -> None:
    problems = check(
        "tiers: [free]\n"
        "rules:\n"
        "  - name: a\n"
        "    match: {path: '/search/**'}\n"
        "    identity: user\n"
        "    limit: 10/second\n"
        f"  - {{name: b, {second}}}\n"
    )
    found = [p for p in problems if "conflicts" in p.reason]
    assert [p for p in problems if p not in found and p.severity == "error"] == []
    assert bool(found) is conflict, problems
    if conflict:
        assert found[0].line == 8
        assert found[0].reason == (
            "rule 'b': conflicts: same match, identity and mode as rule 'a' (line 4); "
            "merge them into one rule with a list of limits"
        )


def test_conflict_ignores_template_names_and_identity_order() -> None:
    found = reasons(
        "rules:\n"
        "  - {name: a, match: {path: '/r/{id}'}, identity: [tenant, ip], limit: 1/second}\n"
        "  - {name: b, match: {path: '/r/{rid}'}, identity: [ip, tenant], limit: 9/minute}\n"
    )
    assert len(found) == 1 and "rule 'b': conflicts" in found[0]


def test_concurrency_conflict() -> None:
    found = reasons(
        "rules:\n"
        "  - {name: a, match: {path: /c}, concurrency: 2}\n"
        "  - {name: b, match: {path: /c}, concurrency: 3}\n"
    )
    assert found == [
        "rule 'b': conflicts: same match, identity and mode as rule 'a' (line 3); "
        "keep one concurrency rule"
    ]


# -- overrides ------------------------------------------------------------------


def test_override_cycle_reported_once() -> None:
    problems = check(
        "rules:\n"
        "  - {name: a, match: {path: /a}, limit: 1/second, overrides: [c]}\n"
        "  - {name: b, match: {path: /b}, limit: 1/second, overrides: [a]}\n"
        "  - {name: c, match: {path: /c}, limit: 1/second, overrides: [b]}\n"
        "  - {name: d, match: {path: /d}, limit: 1/second, overrides: [d]}\n"
    )
    assert [(p.line, p.reason) for p in problems] == [
        (3, "rule 'a': overrides form a cycle: a -> c -> b -> a"),
        (6, "rule 'd': overrides form a cycle: d -> d"),
    ]


@pytest.mark.parametrize(
    ("wide", "narrow", "hidden"),
    [
        ("{path: '/api/**'}", "{path: '/api/v1/**'}", True),
        ("{}", "{path: /x, methods: [GET]}", True),
        ("{path: '/api/**'}", "{path: '/api/**', headers: {X-A: '1'}}", True),
        ("{path: '/api/**', headers: {X-A: '*'}}", "{path: '/api/**', headers: {X-A: '1'}}", True),
        ("{path: '/api/**', headers: {X-A: '2'}}", "{path: '/api/**', headers: {X-A: '1'}}", False),
        ("{path: '/api/**', headers: {X-Partner: '*'}}", "{path: '/api/**'}", False),
        ("{path: '/api/v1/**'}", "{path: '/api/**'}", False),
        ("{path: /x, methods: [GET, POST]}", "{path: /x, methods: [GET]}", True),
        ("{path: /x, methods: [GET]}", "{path: /x}", False),
        ("{path: /x, host: a.example}", "{path: /x, host: b.example}", False),
        ("{path: /x, host: a.example}", "{path: /x, host: A.example}", True),
        ("{route: r}", "{route: r, path: /y}", True),
        ("{route: r}", "{path: /y}", False),
        ("{path: 're:/x.*'}", "{path: /xy}", True),
        ("{path: '/**'}", "{path: 're:/x.*'}", False),
    ],
)
def test_never_matching_rule(wide: str, narrow: str, hidden: bool) -> None:
    problems = check(
        "rules:\n"
        f"  - {{name: narrow, match: {narrow}, identity: tenant, limit: 1/second}}\n"
        f"  - {{name: wide, match: {wide}, identity: user, limit: 1/second, overrides: [narrow]}}\n"
    )
    warnings = [p for p in problems if p.severity == "warning"]
    assert [p for p in problems if p.severity == "error"] == []
    assert bool(warnings) is hidden
    if hidden:
        assert warnings[0].line == 3 and "rule 'narrow': can never apply" in warnings[0].reason


# -- values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (
            "defaults: {algorithm: leaky}\nrules:\n  - {name: a, match: {}, limit: 1/second}\n"
            "  - {name: b, match: {path: /b}, limit: 1/second}\n",
            "unknown algorithm 'leaky'",
        ),
        ("defaults: {on_store_error: retry}\n", "unknown on_store_error 'retry'"),
        ("defaults: {headers: draft}\n", "unknown headers 'draft'"),
        ("defaults: {action: block}\n", "unknown action 'block'"),
        ("defaults: {on_missing_identity: reject}\n", "unknown on_missing_identity 'reject'"),
        ("defaults: {identity: Header:X-A}\n", "unknown identity 'Header:X-A'"),
        ("defaults: {identity: 'header:bad name'}\n", "unknown identity 'header:bad name'"),
        (
            "defaults: {identity: 'jwt:plan'}\n",
            "identity 'jwt:plan' needs an 'identity.jwt' section",
        ),
        ("defaults: {lease: {sync_interval: 0}}\n", "lease sync_interval must be above zero"),
        ("identity: {ipv6_prefix: -1}\n", "ipv6_prefix must be between 0 and 128, got -1"),
        ("identity: {trusted_proxies: [proxy.local]}\n", "'proxy.local' is not an IP address"),
        ("identity: {api_key_header: 'X Key'}\n", "api_key_header 'x key' is not a header name"),
        ("identity: {jwt: {algorithms: [none], secret_env: S}}\n", "unknown JWT algorithm 'none'"),
        (
            "identity: {jwt: {algorithms: [HS256]}}\n",
            "needs exactly one of 'secret_env' and 'public_key_file'",
        ),
        ("rollout: {enforce_percent: -5}\n", "rollout.enforce_percent must be between 0 and 100"),
        ("tiers: [free, free]\n", "tier 'free' is declared twice"),
    ],
)
def test_unknown_or_out_of_range_values(text: str, reason: str) -> None:
    found = reasons(text)
    # Values inherited from defaults are reported once, at the defaults.
    assert len(found) == 1 and reason in found[0], found


def test_value_errors_in_rules_name_the_rule() -> None:
    problems = check(
        "rules:\n"
        "  - {name: a, match: {}, limit: 1/second, on_store_error: crash, headers: all,\n"
        "     action: tarpit, on_missing_identity: guess, algorithm: leaky}\n"
    )
    assert sorted(p.reason.split(" (")[0] for p in problems) == [
        "rule 'a': unknown action 'tarpit'",
        "rule 'a': unknown algorithm 'leaky'",
        "rule 'a': unknown headers 'all'",
        "rule 'a': unknown on_missing_identity 'guess'",
        "rule 'a': unknown on_store_error 'crash'",
    ]
    assert {(p.line, p.severity) for p in problems} in ({(3, "error"), (4, "error")},)


@pytest.mark.parametrize(
    ("entry", "ok"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("2001:db8::/32", True),
        ("10.0.0.0/8", True),
        ("user:ops-bot", True),
        ("api_key:abc:def", True),
        ("tenant:acme", True),
        ("ip:10.1.2.3", True),
        ("ip:10.0.0.0/8", True),
        ("header:X-Bot:yes", True),
        ("header:X-Bot", False),
        ("ip:nowhere", False),
        ("robot:r2", False),
        ("user:", False),
        ("nobody", False),
        ("10.0.0.0/33", False),
    ],
)
def test_allow_deny_entries(entry: str, ok: bool) -> None:
    found = reasons(f"allow: ['{entry}']\ndeny: ['{entry}']\n")
    assert len(found) == (0 if ok else 2), found
    if not ok:
        assert found[0].startswith(f"allow entry '{entry}': ")
        assert found[1].startswith(f"deny entry '{entry}': ")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("limit: 5/minute, cost: 6", "the burst of limit '5/minute' (5) is below the cost 6"),
        ("limit: [100/minute, 5/second], cost: 6", "the burst of limit '5/second' (5) is below"),
        ("limit: 5/minute, cost: 2, burst: 1", "burst 1 is below the cost 2"),
        ("limit: 5/minute, burst: 0", "burst must be at least 1, got 0"),
        ("limit: 5/minute, burst: 3, lease: {size: 4}", "lease size 4 is larger than burst 3"),
        (
            "limit: {free: 5/second, pro: 50/second}, lease: {size: 6}",
            "lease size 6 is larger than the burst of limit '5/second' (5)",
        ),
        (
            "limit: 5/minute, penalty: {after: 1/minute, ban: 0}",
            "penalty ban must be longer than zero",
        ),
        ("match: {methods: []}, limit: 5/minute", "match.methods is empty"),
        ("limit: 5/minute, lease: {size: -2}", "lease size must be 'auto' or at least 1, got -2"),
    ],
)
def test_burst_cost_and_lease(body: str, reason: str) -> None:
    if "match:" not in body:
        body = "match: {}, " + body
    found = reasons(f"tiers: [free, pro]\nrules:\n  - {{name: a, {body}}}\n")
    assert len(found) == 1 and reason in found[0], found


@pytest.mark.parametrize(
    ("body", "warning"),
    [
        ("limit: 1/day, burst: 1", None),
        ("limit: 2/day, burst: 3", "burst 3 is more than one day of limit '2/day'"),
        ("limit: [1/second, 10/day], burst: 11", "more than one day of limit '10/day'"),
        ("limit: 5/day, algorithm: sliding_window", None),
        ("limit: 5/2 days, algorithm: sliding_window", "sliding window of '5/2 days'"),
        ("limit: 5/2 days, algorithm: fixed_window", None),
    ],
)
def test_suspicious_settings_warn(body: str, warning: str | None) -> None:
    problems = check(f"rules:\n  - {{name: a, match: {{}}, {body}}}\n")
    assert [p for p in problems if p.severity == "error"] == []
    found = [p.reason for p in problems]
    assert len(found) == (0 if warning is None else 1), found
    if warning:
        assert warning in found[0]


# -- rule sets built in code -------------------------------------------------------


def test_validate_ruleset_built_in_code() -> None:
    ruleset = RuleSet(
        rules=(
            rule("a", line=3, limit=(Rate(0, 60.0, "0/minute"),)),
            rule("b", line=7, limit=None),
            rule("c", line=9, limit=None, concurrency=-1),
            rule("a", line=12, match=Match(path="/x/**/y")),
        ),
        defaults=Defaults(lease=LeaseConfig(size=0)),
        identity=IdentityConfig(jwt=JWTConfig(secret_env="S", public_key_file="k.pem")),
        rollout=Rollout(enforce_percent=101),
        source="code",
    )
    problems = validate(ruleset)
    found = [(p.file, p.line, p.column, p.reason.split(":")[0]) for p in problems]
    assert found == [
        ("code", 0, 0, "lease size must be 'auto' or at least 1, got 0"),
        ("code", 0, 0, "identity.jwt needs exactly one of 'secret_env' and 'public_key_file'"),
        ("code", 0, 0, "rollout.enforce_percent must be between 0 and 100, got 101"),
        ("code", 3, 0, "rule 'a'"),
        ("code", 7, 0, "rule 'b'"),
        ("code", 9, 0, "rule 'c'"),
        ("code", 12, 0, "rule 'a'"),
        ("code", 12, 0, "rule 'a'"),
    ]
    assert "rate of zero or less in limit '0/minute'" in problems[3].reason
    assert "needs exactly one of 'limit' and 'concurrency'" in problems[4].reason
    assert "concurrency must be at least 1, got -1" in problems[5].reason
    assert "duplicate rule name (first at line 3)" in problems[6].reason
    assert "'**' is only allowed as the last segment" in problems[7].reason
