from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from ratemw.errors import ConfigError, Problem
from ratemw.rules._source import format_for, load_document
from ratemw.rules.model import LeaseConfig, Match, Penalty, Rate, Rollout, RuleSet
from ratemw.rules.parse import load_ruleset, parse_ruleset, ruleset_from_data

HERE = Path(__file__).parent
GOOD = HERE / "good"
BAD = HERE / "bad"


def parse(text: str, fmt: str = "yaml") -> tuple[RuleSet | None, list[Problem]]:
    return parse_ruleset(text, f"rules.{fmt}")


def errors(text: str, fmt: str = "yaml") -> list[Problem]:
    ruleset, problems = parse(text, fmt)
    assert ruleset is None
    return [p for p in problems if p.severity == "error"]


def one_rule(body: str) -> str:
    return "version: 1\nrules:\n  - name: r\n    match: {path: /x}\n" + body


# -- the documented example ----------------------------------------------------


@pytest.fixture(scope="module")
def example() -> RuleSet:
    return load_ruleset(GOOD / "example.yaml")


def test_example_has_no_problems() -> None:
    ruleset, problems = parse_ruleset((GOOD / "example.yaml").read_bytes(), "example.yaml")
    assert problems == []
    assert ruleset is not None


def test_example_content(example: RuleSet) -> None:
    rules = {r.name: r for r in example.rules}
    assert list(rules) == [
        "login", "search", "search-new-limit", "checkout", "reports", "api", "partner-api",
    ]  # fmt: skip
    assert example.tiers == ("free", "basic", "pro") and example.default_tier == "free"
    assert example.allow == ("127.0.0.1", "user:ops-bot")
    assert example.deny == ("203.0.113.0/24",)
    assert example.identity.api_key_header == "x-api-key"
    assert example.identity.trusted_proxies == ("10.0.0.0/8", "127.0.0.1/32")
    assert example.identity.jwt is not None and example.identity.jwt.tier_claim == "plan"
    assert example.defaults.lease == LeaseConfig(size=None, sync_interval=0.2)

    login = rules["login"]
    assert login.match == Match(path="/login", methods=frozenset({"POST"}))
    assert login.limit == (Rate(5, 60.0, "5/minute"),)
    # lease: {size: 1} keeps the inherited sync_interval
    assert login.lease == LeaseConfig(size=1, sync_interval=0.2)
    assert login.line == 27

    search = rules["search"]
    assert search.algorithm == "sliding_window" and search.tiered
    assert search.rates("pro") == (Rate(200, 1.0, "200/second"),)
    assert rules["search-new-limit"].mode == "shadow"
    assert rules["search-new-limit"].algorithm == "token_bucket"  # from defaults

    checkout = rules["checkout"]
    assert (checkout.concurrency, checkout.limit, checkout.identity) == (2, None, ("user",))

    reports = rules["reports"]
    assert reports.match.host == "api.example.com"
    assert (reports.cost, reports.burst) == (10, 100)
    assert [r.text for r in reports.rates()] == ["1000/hour", "100/minute"]
    assert reports.lease == LeaseConfig(size=50, sync_interval=1.0)

    partner = rules["partner-api"]
    assert partner.match.headers == (("x-partner", "*"),)
    assert partner.overrides == ("api",)
    assert partner.identity == ("api_key",)
    assert all(r.on_store_error == "local" and r.headers == "ietf" for r in example.rules)


@pytest.mark.parametrize("name", ["example.toml", "example.json"])
def test_other_formats_parse_to_the_same_ruleset(example: RuleSet, name: str) -> None:
    other = load_ruleset(GOOD / name)
    assert other.source.endswith(name)
    # Rule lines differ between the files; everything else, the digest included, is equal.
    assert [dataclasses.replace(r, line=0) for r in other.rules] == [
        dataclasses.replace(r, line=0) for r in example.rules
    ]
    assert dataclasses.replace(other, rules=(), source="") == dataclasses.replace(
        example, rules=(), source=""
    )
    assert other.digest == example.digest and len(example.digest) == 64


def test_digest_changes_with_content(example: RuleSet) -> None:
    text = (GOOD / "example.yaml").read_text().replace("5/minute", "6/minute")
    changed, _ = parse_ruleset(text, "example.yaml")
    assert changed is not None and changed.digest != example.digest
    same, _ = parse_ruleset("# a comment\n" + (GOOD / "example.yaml").read_text(), "x.yaml")
    assert same is not None and same.digest == example.digest


def test_rule_lines_point_at_rules_in_each_format() -> None:
    toml = load_ruleset(GOOD / "example.toml")
    text = (GOOD / "example.toml").read_text().splitlines()
    for rule in toml.rules:
        assert text[rule.line - 1] == "[[rules]]"
        assert f'name = "{rule.name}"' in text[rule.line]
    js = load_ruleset(GOOD / "example.json")
    lines = (GOOD / "example.json").read_text().splitlines()
    for rule in js.rules:
        assert f'"name": "{rule.name}"' in lines[rule.line]


# -- one malformed file per error ---------------------------------------------

BAD_CASES = [
    ("unknown_key.yaml", 6, "unknown key 'algoritm' in rule 'login'; did you mean 'algorithm'?"),
    ("duplicate_name.yaml", 6, "rule 'login': duplicate rule name (first at line 3)"),
    ("zero_rate.yaml", 5, "rate of zero or less in limit '0/minute'"),
    ("burst_below_cost.yaml", 7, "burst 5 is below the cost 10"),
    ("bad_limit.yaml", 7, "cannot parse limit '5 every fortnight'"),
    ("bad_path.yaml", 6, "unparsable path: a template must be a whole segment"),
    ("undeclared_tier.yaml", 9, "tier 'gold' is not declared in 'tiers'"),
    ("overrides_unknown.yaml", 9, "overrides 'apii', which names no rule; did you mean 'api'?"),
    ("overrides_cycle.yaml", 6, "overrides form a cycle: a -> b -> a"),
    ("bad_list_entry.yaml", 7, "deny entry '300.1.2.3': neither an IP address, a network nor"),
    ("lease_above_burst.yaml", 7, "lease size 10 is larger than the burst of limit '5/minute'"),
    ("conflict.yaml", 8, "conflicts: same match, identity and mode as rule 'api-per-second'"),
    ("yaml_syntax.yaml", 5, "YAML syntax error"),
    ("bad_type.yaml", 6, "rule 'reports': cost must be an integer, got a string ('ten')"),
    ("missing_key.yaml", 3, "rule 'login': missing required key 'match'"),
    ("duplicate_key.yaml", 6, "duplicate key 'limit' in rules[0]"),
    ("toml_syntax.toml", 6, "TOML syntax error"),
    ("json_syntax.json", 4, "JSON syntax error: Expecting property name"),
    # bounds (docs/security.md): refused before anything is expanded or recursed into
    ("billion_laughs.yaml", 8, "the rules document holds more than 100000 values"),
    ("recursive_alias.yaml", 7, "alias *rule refers to a node that contains it"),
    ("deep.yaml", 3, "the rules document nests more than 64 levels deep"),
    ("deep.json", 3, "the rules document nests more than 64 levels deep"),
    ("deep.toml", 4, "the rules document nests more than 64 levels deep"),
    ("long_number.yaml", 6, "is written with 100 characters, more than 64"),
    ("bad_name.yaml", 3, "name 'a\\r\\nSet-Cookie: session=x' is not allowed: use ASCII letters"),
    ("bad_tier.yaml", 2, "tier name 'pro plan' is not allowed"),
    ("huge_period.yaml", 5, "is longer than the maximum of 3650 days"),
    ("huge_burst.yaml", 7, "burst 100000000000000000000000000000000000000000 is above the maximum"),
    ("slow_refill.yaml", 6, "burst 3651 takes 3651 days to refill at limit '1/day'"),
]


def test_every_bad_file_is_covered() -> None:
    files = {p.name for p in BAD.iterdir()} - {"many_errors.yaml"}
    assert files == {name for name, _, _ in BAD_CASES}


@pytest.mark.parametrize(("name", "line", "reason"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_file(name: str, line: int, reason: str) -> None:
    path = BAD / name
    ruleset, problems = parse_ruleset(path.read_bytes(), str(path))
    assert ruleset is None
    assert len(problems) == 1, problems
    problem = problems[0]
    assert reason in problem.reason
    assert (problem.file, problem.line, problem.severity) == (str(path), line, "error")
    assert problem.column > 0
    with pytest.raises(ConfigError) as info:
        load_ruleset(path)
    assert info.value.errors == (problem,)
    assert f"{path}:{line}:" in str(info.value)


def test_all_problems_in_one_pass() -> None:
    path = BAD / "many_errors.yaml"
    _, problems = parse_ruleset(path.read_bytes(), str(path))
    found = [(p.line, p.reason) for p in problems]
    expected = [
        (1, "unsupported version 2"),
        (4, "ipv6_prefix must be between 0 and 128, got 129"),
        (5, "trusted_proxies: '10.0.0.0/33' is not an IP address or network"),
        (6, "deny entry 'nobody'"),
        (7, "rollout.enforce_percent must be between 0 and 100, got 150"),
        (10, "path 'login' must start with '/'"),
        (12, "unknown algorithm 'leaky_bucket'"),
        (13, "duplicate rule name"),
        (15, "rate of zero or less in limit '-1/minute'"),
        (16, "unknown mode 'dry-run'"),
        (19, "tier 'gold' is not declared"),
        (20, "overrides 'nothing', which names no rule"),
        (23, "concurrency must be at least 1, got 0"),
        (24, "cost must be at least 1, got 0"),
        (25, "unknown identity 'cookie'"),
        (26, "missing required key 'name'"),
        (28, "lease size must be 'auto' or at least 1, got 0"),
        (28, "cannot parse duration 'soon'"),
    ]
    assert len(found) == len(expected), found
    for (line, reason), (want_line, want) in zip(found, expected, strict=True):
        assert line == want_line and want in reason, (line, reason)
    assert all(p.severity == "error" for p in problems)


# -- schema details -----------------------------------------------------------


def test_defaults_apply_to_rules() -> None:
    ruleset, problems = parse(
        "version: 1\n"
        "defaults:\n"
        "  identity: [tenant, header:X-Client]\n"
        "  algorithm: gcra\n"
        "  mode: shadow\n"
        "  action: challenge\n"
        "  on_missing_identity: skip\n"
        "  on_store_error: open\n"
        "  headers: legacy\n"
        "  lease: {size: 20, sync_interval: 1s}\n"
        "rules:\n"
        "  - {name: a, match: {path: /a}, limit: 100/second}\n"
        "  - {name: b, match: {path: /b}, limit: 100/second, identity: user, mode: enforce,\n"
        "     lease: {sync_interval: 50ms}}\n"
    )
    assert problems == [] and ruleset is not None
    a, b = ruleset.rules
    assert a.identity == ("tenant", "header:x-client")
    assert (a.algorithm, a.mode, a.action, a.on_missing_identity) == (
        "gcra", "shadow", "challenge", "skip",
    )  # fmt: skip
    assert (a.on_store_error, a.headers, a.lease) == ("open", "legacy", LeaseConfig(20, 1.0))
    assert (b.identity, b.mode, b.algorithm) == (("user",), "enforce", "gcra")
    assert b.lease == LeaseConfig(size=20, sync_interval=0.05)


def test_limit_forms() -> None:
    ruleset, problems = parse(
        "version: 1\n"
        "tiers: [free, pro]\n"
        "rules:\n"
        "  - {name: a, match: {path: /a}, limit: '10/second; 100/minute'}\n"
        "  - {name: b, match: {path: /b}, limit: [10 per second, 100/5 minutes]}\n"
        "  - {name: c, match: {path: /c}, limit: {free: 1/second, pro: [5/second, 50/minute]}}\n"
    )
    assert problems == [] and ruleset is not None
    a, b, c = ruleset.rules
    assert [(r.count, r.period_seconds) for r in a.rates()] == [(10, 1.0), (100, 60.0)]
    assert [(r.count, r.period_seconds) for r in b.rates()] == [(10, 1.0), (100, 300.0)]
    assert c.tiered and [r.count for r in c.rates("pro")] == [5, 50]
    assert c.rates("free") == (Rate(1, 1.0, "1/second"),)


def test_match_normalisation_and_options() -> None:
    ruleset, problems = parse(
        "version: 1\n"
        "identity: {api_key_header: X-Token, ipv6_prefix: 56,\n"
        "           jwt: {secret_env: S, algorithms: [HS512], leeway: 30s, audience: me}}\n"
        "rollout: {enforce_percent: 25}\n"
        "rules:\n"
        "  - name: a\n"
        "    match: {methods: [get, Post], host: API.Example.com, route: a-route,\n"
        "            headers: {X-Version: 2, X-Any: '*'}}\n"
        "    identity: [tenant, ip, 'jwt:org']\n"
        "    limit: 5/second\n"
        "    penalty: {after: 20/minute, ban: 15m}\n"
        "    overrides: b\n"
        "  - {name: b, match: {path: /b}, limit: 5/second, lease: {size: auto}}\n"
    )
    assert problems == [] and ruleset is not None
    a, b = ruleset.rules
    assert a.match == Match(
        path=None,
        methods=frozenset({"GET", "POST"}),
        host="api.example.com",
        headers=(("x-any", "*"), ("x-version", "2")),
        route="a-route",
    )
    assert a.identity == ("tenant", "ip", "jwt:org")
    assert a.penalty == Penalty(after=Rate(20, 60.0, "20/minute"), ban_seconds=900.0)
    assert a.overrides == ("b",)
    assert b.lease.size is None
    assert ruleset.identity.api_key_header == "x-token"
    assert ruleset.identity.ipv6_prefix == 56
    jwt = ruleset.identity.jwt
    assert jwt is not None
    assert (jwt.algorithms, jwt.leeway_seconds, jwt.audience) == (("HS512",), 30.0, "me")
    assert ruleset.rollout == Rollout(enforce_percent=25.0)


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("    limit: 5/minute\n    cost: true\n", 6, "cost must be an integer, got a boolean"),
        ("    limit: 5/minute\n    burst: 1.5\n", 6, "burst must be an integer, got a number"),
        (
            "    limit: 5/minute\n    concurrency: 2\n",
            3,
            "exactly one of 'limit' and 'concurrency', has both",
        ),
        ("    identity: ip\n", 3, "exactly one of 'limit' and 'concurrency', has neither"),
        ("    limit: []\n", 5, "must be a limit like '5/minute' or a list"),
        ("    limit: {}\n", 5, "must map at least one tier"),
        ("    limit: [5/minute, 7]\n", 5, "limit item must be a string, got an integer (7)"),
        (
            "    limit: 5/minute\n    lease: {size: big}\n",
            6,
            "lease.size must be 'auto' or an integer",
        ),
        (
            "    limit: 5/minute\n    lease: {sise: 1}\n",
            6,
            "unknown key 'sise' in rule 'r': lease; did you mean 'size'?",
        ),
        (
            "    limit: 5/minute\n    lease: 5\n",
            6,
            "rule 'r': lease must be a mapping, got an integer",
        ),
        ("    limit: 5/minute\n    identity: []\n", 6, "must name at least one identity"),
        (
            "    limit: 5/minute\n    identity: {a: 1}\n",
            6,
            "identity must be a string or a list of strings",
        ),
        ("    limit: 5/minute\n    penalty: {after: 20/minute}\n", 6, "penalty needs 'ban'"),
        (
            "    limit: 5/minute\n    penalty: {after: lots, ban: 1m}\n",
            6,
            "cannot parse limit 'lots'",
        ),
        ("    limit: 5/minute\n    overrides: [1]\n", 6, "overrides item must be a string"),
        ("    limit: 5/minute\n    mode: 1\n", 6, "mode must be a string, got an integer"),
    ],
)
def test_rule_schema_errors(body: str, line: int, reason: str) -> None:
    found = errors(one_rule(body))
    assert len(found) == 1, found
    assert found[0].line == line and reason in found[0].reason, found[0]


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("", 0, "the rules file is empty"),
        ("- a\n- b\n", 1, "the rules file must be a mapping, got a list"),
        (
            "version: 1\nrule: []\n",
            2,
            "unknown key 'rule' in the rules file; did you mean 'rules'?",
        ),
        ("version: 1\nrules: {a: 1}\n", 2, "rules must be a list, got a mapping"),
        ("version: '1'\n", 1, "unsupported version '1'"),
        (
            "version: 1\ndefaults: {algorithm: gcra, burst: 5}\n",
            2,
            "unknown key 'burst' in defaults",
        ),
        ("version: 1\nidentity: {ipv6_prefix: x}\n", 2, "identity.ipv6_prefix must be an integer"),
        (
            "version: 1\nidentity: {jwt: {secret_env: S, isuer: x}}\n",
            2,
            "unknown key 'isuer' in identity.jwt; did you mean 'issuer'?",
        ),
        ("version: 1\ntiers: free\nallow: [1]\n", 3, "allow item must be a string"),
        (
            "version: 1\nrollout: {enforce_percent: all}\n",
            2,
            "enforce_percent must be an integer or a number",
        ),
        ("version: 1\nrules:\n  - 5\n", 3, "rule 'rules[0]' must be a mapping, got an integer"),
        (
            "version: 1\nrules:\n  - {name: '', match: {}, limit: 1/second}\n",
            3,
            "name must not be empty",
        ),
        (
            "version: 1\nrules:\n  - {name: a, match: /a, limit: 1/second}\n",
            3,
            "match must be a mapping",
        ),
        (
            "version: 1\nrules:\n  - {name: a, match: {headers: [a]}, limit: 1/second}\n",
            3,
            "match.headers must be a mapping",
        ),
    ],
)
def test_document_schema_errors(text: str, line: int, reason: str) -> None:
    found = errors(text)
    assert len(found) == 1, found
    assert found[0].line == line and reason in found[0].reason, found[0]


def test_unknown_key_points_at_the_key() -> None:
    (problem,) = errors(one_rule("    limit: 5/minute\n    cots: 2\n"))
    assert (problem.line, problem.column) == (6, 5)
    assert problem.reason == "unknown key 'cots' in rule 'r'; did you mean 'cost'?"


def test_unknown_key_without_suggestion() -> None:
    (problem,) = errors(one_rule("    limit: 5/minute\n    zzzz: 2\n"))
    assert problem.reason == "unknown key 'zzzz' in rule 'r'"


def test_header_identity_is_lower_cased() -> None:
    ruleset, _ = parse(one_rule("    limit: 5/minute\n    identity: header:X-Client-ID\n"))
    assert ruleset is not None and ruleset.rules[0].identity == ("header:x-client-id",)


def test_utf8_bom_and_bytes() -> None:
    ruleset, problems = parse_ruleset(b"\xef\xbb\xbfversion: 1\n", "rules.yaml")
    assert problems == [] and ruleset is not None and ruleset.rules == ()
    ruleset, problems = parse_ruleset(b"version: \xff\n", "rules.yaml")
    assert ruleset is None and "not UTF-8" in problems[0].reason


def test_format_from_extension_and_override() -> None:
    assert [format_for(n) for n in ("a.yml", "a.YAML", "a.toml", "a.json", "a")] == [
        "yaml", "yaml", "toml", "json", "yaml",
    ]  # fmt: skip
    ruleset, problems = parse_ruleset('{"version": 1}', "rules.txt", fmt="json")
    assert problems == [] and ruleset is not None
    _, problems = parse_ruleset("version: 1", "rules.txt", fmt="ini")
    assert "unknown rules format 'ini'" in problems[0].reason


def test_toml_and_json_schema_errors_have_lines() -> None:
    toml = 'version = 1\n\n[[rules]]\nname = "a"\nmatch = { path = "/a" }\nlimit = "5/minute"\n'
    (problem,) = errors(toml + "burts = 3\n", "toml")
    assert (problem.line, problem.column) == (7, 1) and "did you mean 'burst'" in problem.reason
    (problem,) = errors(toml + "\n[rules.lease]\nsize = 'x'\n", "toml")
    assert (problem.line, problem.column) == (9, 8)
    doc = {"version": 1, "rules": [{"name": "a", "match": {"path": "/a"}, "limit": "5/minute"}]}
    doc["rules"][0]["cost"] = "x"  # type: ignore[index]
    (problem,) = errors(json.dumps(doc, indent=2), "json")
    assert problem.line == 10 and "cost must be an integer" in problem.reason


def test_json_duplicate_keys() -> None:
    (problem,) = errors('{"version": 1,\n "version": 1}', "json")
    assert (problem.line, problem.reason) == (2, "duplicate key 'version' at the top level")


def test_yaml_positions_table() -> None:
    doc, problems = load_document("a:\n  - b: 1\n    c: [x, y]\n", "x.yaml", "yaml")
    assert problems == [] and doc is not None
    assert doc.positions[("a", 0, "c", 1)] == (3, 12)
    assert doc.key_positions[("a", 0, "c")] == (3, 5)
    assert doc.locate(("a", 0, "c", 1, "missing")) == (3, 12)
    assert doc.locate(("a", 0, "c"), key=True) == (3, 5)
    assert doc.locate(("zzz",)) == (1, 1)


def test_toml_positions_table() -> None:
    text = (
        '[[rules]]\nname = "a"\n[[rules]]\nname = "b"\nmatch = { path = "/b", '
        'headers = { "X-A" = "1" } }\nlimit = [\n  "1/second",\n  "2/minute",\n]\n'
        "[rules.lease]\nsize = 3\n"
    )
    doc, problems = load_document(text, "x.toml", "toml")
    assert problems == [] and doc is not None
    assert doc.positions[("rules", 1)] == (3, 1)
    assert doc.positions[("rules", 1, "match", "headers", "X-A")] == (5, 44)
    assert doc.positions[("rules", 1, "limit", 1)] == (8, 3)
    assert doc.positions[("rules", 1, "lease", "size")] == (11, 8)
    assert doc.key_positions[("rules", 1, "lease", "size")] == (11, 1)


def test_ruleset_from_data() -> None:
    data = {
        "version": 1,
        "rules": [{"name": "a", "match": {"path": "/a", "methods": ("get",)}, "limit": "5/second"}],
    }
    ruleset = ruleset_from_data(data)
    assert ruleset.source == "<rules>" and ruleset.rules[0].line == 0
    assert ruleset.rules[0].match.methods == frozenset({"GET"})
    with pytest.raises(ConfigError) as info:
        ruleset_from_data({"rules": [{"name": "a", "limit": "5/second"}]}, source="settings")
    (problem,) = info.value.problems
    assert problem.file == "settings" and "missing required key 'match'" in problem.reason


def test_warnings_are_logged_not_raised(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(one_rule("    limit: 1/day\n    burst: 5\n"))
    with caplog.at_level(logging.WARNING, logger="ratemw.rules"):
        ruleset = load_ruleset(path)
    assert ruleset.rules[0].burst == 5
    assert "more than one day" in caplog.text
