"""Bounds on rules documents (docs/security.md): size, nesting, YAML aliases, long
numbers, names that reach headers, and numbers both stores represent exactly.

Every refusal is a Problem with file, line and column: never a traceback, a
MemoryError or a RecursionError, whichever way the document arrives.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratemw import ConfigError, Limiter, RequestInfo
from ratemw.cli import main
from ratemw.config import live_limiter, load
from ratemw.config.loader import LOADS
from ratemw.decision import policy_field, sf_string
from ratemw.errors import Problem
from ratemw.rules._source import ParseLimits, load_document
from ratemw.rules.model import MAX_COUNT, MAX_PERIOD_SECONDS
from ratemw.rules.parse import load_ruleset, parse_ruleset, ruleset_from_data
from ratemw.testing import ManualClock
from tests.config import DEADLINE, admitted, rules_yaml

BAD = Path(__file__).parent / "bad"
LAUGHS = (BAD / "billion_laughs.yaml").read_bytes()
DEEP = "the rules document nests more than 64 levels deep"


def refused(text: str | bytes, fmt: str, **limits: int) -> Problem:
    """The one problem that refuses ``text`` before it is parsed."""
    ruleset, problems = parse_ruleset(text, f"rules.{fmt}", limits=ParseLimits(**limits))
    assert ruleset is None
    assert len(problems) == 1, problems
    assert problems[0].severity == "error"
    return problems[0]


# -- YAML aliases ----------------------------------------------------------------------


def test_billion_laughs_is_refused_before_it_is_expanded() -> None:
    assert len(LAUGHS) < 520
    tracemalloc.start()
    try:
        problem = refused(LAUGHS, "yaml")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000  # 9**9 values would be gigabytes
    assert "holds more than 100000 values" in problem.reason
    assert "aliases count as what they repeat" in problem.reason
    assert (problem.line, problem.column) == (8, 8)  # the first alias past the bound


def test_aliases_within_the_bound_still_work() -> None:
    text = (
        "version: 1\n"
        "x-common: &common {identity: ip, algorithm: gcra}\n"
        "rules:\n"
        "  - {name: a, match: {path: /a}, limit: 5/minute, <<: *common}\n"
        "  - {name: b, match: {path: /b}, limit: 5/minute, <<: *common}\n"
    )
    doc, problems = load_document(text, "rules.yaml", "yaml")
    assert doc is not None and problems == []
    assert doc.data["rules"][1]["algorithm"] == "gcra"


def test_expansion_is_counted_exactly() -> None:
    # root, key "a", its list of 3 (4 values), key "b", its list, 3 aliases of 4 values each
    text = "a: &a [1, 2, 3]\nb: [*a, *a, *a]\n"
    assert load_document(text, "r.yaml", "yaml", limits=ParseLimits(max_nodes=20))[0] is not None
    doc, problems = load_document(text, "r.yaml", "yaml", limits=ParseLimits(max_nodes=19))
    assert doc is None and "holds more than 19 values" in problems[0].reason


def test_recursive_alias_is_refused() -> None:
    problem = refused("version: 1\nrules: &r [*r]\n", "yaml")
    assert "alias *r refers to a node that contains it" in problem.reason
    assert (problem.line, problem.column) == (2, 12)


def test_an_anchor_redefined_inside_is_not_recursive() -> None:
    # The composer refuses a duplicate anchor itself; what matters is no false "recursive".
    _, problems = parse_ruleset("a: &x [&x 1, *x]\n", "r.yaml")
    assert problems and "recursive" not in problems[0].reason


# -- nesting ---------------------------------------------------------------------------

N = 10_000
NESTED = [
    ("json", '{"version": 1, "x": ' + "[" * N + "]" * N + "}", (1, 84)),
    ("json", '{"x":' + '{"a":' * N + "1" + "}" * N + "}", (1, 321)),
    ("toml", "version = 1\nx = " + "[" * N + "]" * N, (2, 69)),
    ("toml", "x = " + "{a=" * N + "1" + "}" * N, (1, 197)),
    ("toml", "a" + ".a" * 100_000 + " = 1", (1, 128)),  # tomllib: quadratic in the parts
    ("toml", "[a" + ".a" * 100_000 + "]", (1, 129)),
    ("toml", "[a" + ".a" * 40 + "]\nb" + ".b" * 40 + " = 1", (1, 1)),  # 82 levels in all
    ("yaml", "version: 1\nx: " + "[" * N + "]" * N, None),  # libyaml's own limit first
    ("yaml", "x:\n" + "".join("  " * i + "- \n" for i in range(1, 100)) + "  " * 100 + "1\n", None),
    ("yaml", "- " * N + "a", (1, 129)),
]


@pytest.mark.parametrize(("fmt", "text", "where"), NESTED)
def test_deep_nesting_is_a_problem_not_a_recursion_error(
    fmt: str, text: str, where: tuple[int, int] | None
) -> None:
    problem = refused(text, fmt)
    assert DEEP in problem.reason and "RATEMW_RULES_MAX_DEPTH" in problem.reason
    assert problem.line > 0 and problem.column > 0
    if where is not None:
        assert (problem.line, problem.column) == where


@pytest.mark.parametrize(
    ("fmt", "template"),
    [
        ("json", '{{"x": {open}{close}}}'),
        ("yaml", "x: {open}{close}\n"),
        ("toml", "x = {open}{close}\n"),
    ],
)
def test_depth_limit_is_exact(fmt: str, template: str) -> None:
    # The document itself is one level: 63 more lists are 64 levels, 64 are too many.
    ok = template.format(open="[" * 63, close="]" * 63)
    assert load_document(ok, f"r.{fmt}", fmt)[0] is not None
    bad = template.format(open="[" * 64, close="]" * 64)
    doc, problems = load_document(bad, f"r.{fmt}", fmt)
    assert doc is None and DEEP in problems[0].reason
    doc, _ = load_document(bad, f"r.{fmt}", fmt, limits=ParseLimits(max_depth=65))
    assert doc is not None


# -- size ------------------------------------------------------------------------------


def test_size_limit(tmp_path: Path) -> None:
    head = b"version: 1\n# padding\n"
    exact = head + b"#" * (1024 * 1024 - len(head) - 1) + b"\n"
    assert len(exact) == 1024 * 1024
    ruleset, problems = parse_ruleset(exact, "rules.yaml")
    assert ruleset is not None, problems
    problem = refused(exact + b"\n", "yaml")
    assert problem.reason == (
        "the rules document is too large: more than 1048576 bytes (RATEMW_RULES_MAX_BYTES)"
    )
    assert (problem.line, problem.column) == (4, 1)  # the first byte past the limit
    # A file is read no further than the limit (plus one byte, to know it is past it).
    big = tmp_path / "rules.yaml"
    big.write_bytes(exact * 3)
    with pytest.raises(ConfigError, match="too large") as info:
        load_ruleset(big)
    assert (info.value.errors[0].line, info.value.errors[0].column) == (4, 1)
    assert refused("version: 1\n" * 20, "yaml", max_bytes=100).line == 10


def test_size_is_counted_in_utf8_bytes() -> None:
    text = "version: 1\n# " + "é" * 60 + "\n"  # 74 characters, 134 bytes
    assert parse_ruleset(text, "r.yaml", limits=ParseLimits(max_bytes=134))[0] is not None
    assert "too large" in refused(text, "yaml", max_bytes=133).reason


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ParseLimits.from_env({}) == ParseLimits(1024 * 1024, 64, 100_000)
    env = {"RATEMW_RULES_MAX_BYTES": "2048", "RATEMW_RULES_MAX_DEPTH": " 8 "}
    assert ParseLimits.from_env(env) == ParseLimits(2048, 8, 100_000)
    bad = {
        "RATEMW_RULES_MAX_BYTES": "-1",
        "RATEMW_RULES_MAX_DEPTH": "0",
        "RATEMW_RULES_MAX_NODES": "x",
    }
    assert ParseLimits.from_env(bad) == ParseLimits()
    monkeypatch.setenv("RATEMW_RULES_MAX_NODES", "1000")
    _, problems = parse_ruleset(LAUGHS, "r.yaml")
    assert "holds more than 1000 values" in problems[0].reason
    monkeypatch.setenv("RATEMW_RULES_MAX_BYTES", "50")
    assert "more than 50 bytes" in load(b"version: 1\n" * 10, "r.yaml", quiet=True).errors[0].reason


# -- numbers written at length ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "text"),
    [
        ("yaml", "version: 1\ncost: " + "9" * 5000),
        ("yaml", "version: 1\ncost: !!int " + "9" * 5000),
        ("yaml", "version: 1\ncost: " + "1:" * 100_000 + "1"),  # YAML 1.1 base 60: slow
        ("json", '{"version": 1,\n"cost": ' + "9" * 5000 + "}"),
        ("toml", "version = 1\ncost = " + "9" * 5000),
    ],
)
def test_long_numbers_are_refused(fmt: str, text: str) -> None:
    problem = refused(text, fmt)
    assert "characters, more than 64" in problem.reason
    assert (problem.line, problem.column) == (2, {"yaml": 7, "json": 9, "toml": 8}[fmt])


def test_long_strings_are_not_numbers() -> None:
    text = 'version: 1\nx: "' + "9" * 5000 + '"\n'
    assert load_document(text, "r.yaml", "yaml")[0] is not None


# -- every entry point -----------------------------------------------------------------


def test_check_command_reports_and_exits_1(tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"version": 1,\n "x": ' + "[" * N + "]" * N + "}")
    out = io.StringIO()
    code = main(["check", str(BAD / "billion_laughs.yaml"), str(deep)], out=out)
    text = out.getvalue()
    assert code == 1
    assert f"{BAD / 'billion_laughs.yaml'}:8:8: error: the rules document holds more" in text
    assert f"{deep}:2:70: error: {DEEP}" in text
    assert "Traceback" not in text and text.splitlines()[-1].startswith("invalid: 2 error(s)")


def test_loader_counts_and_logs_a_refusal(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="ratemw.config")
    before = LOADS.counts()["error"]
    loaded = load(b"version = 1\nx = " + b"[" * N + b"]" * N, "proposal.toml")
    assert not loaded.ok and LOADS.counts()["error"] == before + 1
    assert loaded.errors[0].line == 2 and DEEP in loaded.errors[0].reason
    assert any(r.getMessage().startswith("ratemw: proposal.toml:2:69:") for r in caplog.records)


@pytest.fixture
def live_file(tmp_path: Path) -> Iterator[tuple[Limiter, Any, Path]]:
    path = tmp_path / "ratelimits.yaml"
    path.write_bytes(rules_yaml("2/minute"))
    limiter, live = live_limiter(
        path, source_options={"mode": "poll", "poll_interval_seconds": 0.05}
    )
    yield limiter, live, path
    live.close()
    limiter.close()


def test_a_watched_file_keeps_its_last_good_rules(live_file: tuple[Limiter, Any, Path]) -> None:
    limiter, live, path = live_file
    assert admitted(limiter, 4, peer="192.0.2.10") == 2
    before = LOADS.counts()["error"]
    path.write_bytes(LAUGHS)
    assert live.wait_for(lambda r: "holds more than" in (r.last_error or ""), DEADLINE)
    assert live.reloads_failed >= 1 and LOADS.counts()["error"] >= before + 1
    assert f"{path}:8:8:" in live.last_error
    assert admitted(limiter, 4, peer="192.0.2.11") == 2  # still the last good rules


# -- property: any text at all is a list of problems -----------------------------------

_SOUP = st.text(alphabet="[]{}()\"'\\:,-&*!#=.\n\t 0123456789aeE_<>|", max_size=400)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.text(max_size=400), _SOUP), fmt=st.sampled_from(["yaml", "json", "toml"]))
def test_any_text_gives_problems_never_an_exception(text: str, fmt: str) -> None:
    ruleset, problems = parse_ruleset(text, f"rules.{fmt}", limits=ParseLimits(max_depth=8))
    assert all(isinstance(p, Problem) for p in problems)
    if ruleset is None:
        assert any(p.severity == "error" for p in problems)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=300), fmt=st.sampled_from(["yaml", "json", "toml"]))
def test_any_bytes_give_problems_never_an_exception(data: bytes, fmt: str) -> None:
    loaded = load(data, f"rules.{fmt}", fmt, quiet=True)
    assert loaded.ok or loaded.errors


@settings(max_examples=40, deadline=None)
@given(
    depth=st.integers(1, 3000),
    kind=st.sampled_from("[{"),
    fmt=st.sampled_from(["yaml", "json", "toml"]),
)
def test_any_nesting_is_bounded(depth: int, kind: str, fmt: str) -> None:
    close = "]" if kind == "[" else "}"
    inner = (
        kind + ("a=" if fmt == "toml" and kind == "{" else '"a":' if kind == "{" else "")
    ) * depth
    text = {"json": '{"x":%s}', "yaml": "x: %s", "toml": "x = %s"}[fmt] % (
        inner + "1" + close * depth
    )
    doc, problems = load_document(text, f"r.{fmt}", fmt)
    assert (doc is None) == (depth > 63) or problems


# -- names reach headers ---------------------------------------------------------------


def _rule(name: str, **more: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "rules": [{"name": name, "match": {"path": "/x"}, "limit": "1/minute", **more}],
    }


@pytest.mark.parametrize(
    "name",
    [
        "login", "search-new-limit", "v1.things", "tests.integrations.django.views.decorated",
        "app.views.make.<locals>.limited#2", "api:v2", "_private", "a" * 256, "x/y",
    ],
)  # fmt: skip
def test_names_in_use_are_valid(name: str) -> None:
    assert ruleset_from_data(_rule(name)).rules[0].name == name


@pytest.mark.parametrize(
    "name",
    [
        "a\r\nSet-Cookie: session=x", "a\nb", "a\x00", 'a"b', "a\\b", "a b", "a,b", "a;b",
        "caf\u00e9", "-lead", ".lead", "a" * 257, " login", "a\u2028b",
    ],
)  # fmt: skip
def test_names_that_could_break_a_header_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="is not allowed: use ASCII letters") as info:
        ruleset_from_data(_rule(name))
    assert len(info.value.errors) == 1


def _visible(value: str) -> bool:
    return all(" " <= c <= "~" for c in value)


@settings(max_examples=150, deadline=None)
@given(name=st.text(min_size=1, max_size=40))
def test_any_name_is_refused_or_renders_clean_headers(name: str) -> None:
    try:
        limiter = Limiter(_rule(name, headers="both"), clock=ManualClock())
    except ConfigError as exc:
        assert any("name" in p.reason for p in exc.errors)
        return
    try:
        info = RequestInfo(path="/x", peer="192.0.2.1")
        decisions = [limiter.decide(info), limiter.decide(info)]
        assert decisions[1].status == 429
        for decision in decisions:
            _, headers, body = (
                decision.response() if not decision.allowed else (200, decision.headers, b"")
            )
            for header, value in headers:
                assert _visible(header) and _visible(value), (header, value)
            assert json.loads(body or b"{}").get("violated-policies", [name]) == [name]
        assert dict(decisions[1].headers)["RateLimit-Policy"] == f'"{name}";q=1;w=60'
    finally:
        limiter.close()


def test_a_snapshot_with_a_bad_name_cannot_render_headers() -> None:
    # Defence in depth: a rule set built in code skips validation; compiling refuses it.
    good = ruleset_from_data(_rule("ok"))
    bad = dataclasses.replace(
        good, rules=(dataclasses.replace(good.rules[0], name="a\r\nSet-Cookie: x"),)
    )
    with pytest.raises(ValueError, match="cannot be written in a header"):
        Limiter(bad, clock=ManualClock())


def test_sf_string() -> None:
    assert sf_string("login") == '"login"'
    assert sf_string('a"b\\c') == '"a\\"b\\\\c"'
    assert policy_field("login", 5, 60) == '"login";q=5;w=60'
    assert policy_field("half", 5, 0.5) == '"half";q=5;w=0.5'
    for bad in ("a\r\nb", "a\x00", "\x7f", "caf\u00e9"):
        with pytest.raises(ValueError):
            sf_string(bad)


# -- numbers both stores represent exactly ---------------------------------------------

RULE = "version: 1\nrules:\n  - name: r\n    match: {path: /x}\n"


L5 = "    limit: 5/second\n"


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("    limit: 1000000001/second\n", 5, "the count of limit '1000000001/second' is above"),
        ("    limit: 5/99999999999999999999 days\n", 5, "longer than the maximum of 3650 days"),
        ("    limit: 1/3651 days\n", 5, "longer than the maximum of 3650 days"),
        ("    limit: 1/11 years\n", 5, "longer than the maximum of 3650 days"),
        (L5 + "    cost: 100000000000000000000000000000000000000000\n", 6,
         "cost 100000000000000000000000000000000000000000 is above the maximum of 1_000_000_000"),
        (L5 + "    burst: 1000000001\n", 6, "burst 1000000001 is above the maximum"),
        ("    concurrency: 1000000001\n", 5, "concurrency 1000000001 is above the maximum"),
        ("    limit: 1/day\n    burst: 3651\n", 6, "takes 3651 days to refill"),
        (L5 + "    lease: {size: 1000000001}\n", 6, "lease size 1000000001 is above"),
        (L5 + "    lease: {sync_interval: 0.0001}\n", 6, "at least 1ms"),
        (L5 + "    lease: {sync_interval: 3651d}\n", 6, "sync_interval is longer"),
        (L5 + "    penalty: {after: 5/minute, ban: 3651d}\n", 6, "penalty ban is longer"),
        (L5 + "    penalty: {after: 5/3651 days, ban: 1d}\n", 6, "3650 days"),
    ],
)  # fmt: skip
def test_numbers_beyond_the_bounds(body: str, line: int, reason: str) -> None:
    ruleset, problems = parse_ruleset(RULE + body, "rules.yaml")
    errors = [p for p in problems if p.severity == "error"]
    assert ruleset is None and errors, problems
    assert any(reason in p.reason and p.line == line and p.column > 0 for p in errors), errors


def test_jwt_leeway_bound() -> None:
    jwt = "identity:\n  jwt: {secret_env: S, leeway: %s}\n"
    _, problems = parse_ruleset("version: 1\n" + jwt % "3651d", "rules.yaml")
    assert [(p.line, p.reason) for p in problems] == [
        (3, "identity.jwt.leeway is longer than the maximum of 3650 days")
    ]
    assert parse_ruleset("version: 1\n" + jwt % "3650d", "rules.yaml")[0] is not None


@pytest.mark.parametrize(
    "body",
    [
        "    limit: 1000000000/second\n    cost: 1000000000\n",
        "    limit: 1000000000/second\n    burst: 1000000000\n    lease: {size: 1000000000}\n",
        "    limit: 1/3650 days\n",
        "    limit: 10/10 years\n",
        "    limit: 1/day\n    burst: 3650\n    cost: 3650\n",
        "    concurrency: 1000000000\n",
        "    limit: 5/second\n    lease: {sync_interval: 1ms}\n",
        "    limit: 5/second\n    penalty: {after: 5/minute, ban: 3650d}\n",
    ],
)
def test_numbers_at_the_bounds_are_accepted(body: str) -> None:
    ruleset, problems = parse_ruleset(RULE + body, "rules.yaml")
    assert ruleset is not None, problems
    assert [p for p in problems if p.severity == "error"] == []


AT_BOUNDS = [
    # (rule settings, requests, admitted): the local store and Redis must agree
    ({"limit": f"5/{MAX_PERIOD_SECONDS // 86400} days"}, 7, 5),
    ({"limit": f"{MAX_COUNT}/second", "cost": MAX_COUNT}, 3, 1),
    ({"limit": "1/day", "burst": 3650, "cost": 3650}, 3, 1),
    ({"limit": f"{MAX_COUNT}/{MAX_PERIOD_SECONDS // 86400} days", "cost": MAX_COUNT // 2}, 3, 2),
    ({"limit": f"3/{MAX_PERIOD_SECONDS // 86400} days", "algorithm": "sliding_window"}, 5, 3),
    ({"limit": f"3/{MAX_PERIOD_SECONDS // 86400} days", "algorithm": "fixed_window"}, 5, 3),
]


@pytest.mark.redis
@pytest.mark.parametrize(("settings_", "requests", "expected"), AT_BOUNDS)
def test_local_and_redis_agree_at_the_bounds(
    redis_url: str, settings_: dict[str, Any], requests: int, expected: int
) -> None:
    rules = {"version": 1, "rules": [{"name": "r", "match": {"path": "/x"}, **settings_}]}
    info = RequestInfo(path="/x", peer="192.0.2.20")
    counts = []
    for options in ({"clock": ManualClock()}, {"redis_url": redis_url}):
        limiter = Limiter(rules, **options)
        try:
            counts.append(sum(limiter.decide(info).allowed for _ in range(requests)))
        finally:
            limiter.close()
    assert counts == [expected, expected]
