"""The rules parser on hostile documents: whatever the bytes, ``parse_ruleset`` returns a
rule set or problems (never raises), ``load`` never raises, and ``ratemw check``'s
loader counts a refusal instead of crashing."""

from __future__ import annotations

import json
import tracemalloc
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ratemw.config.loader import load
from ratemw.errors import Problem
from ratemw.rules.parse import parse_ruleset
from tests.fuzz import fuzz

FORMATS = ("yaml", "json", "toml")

_KEYS = st.sampled_from(
    ["version", "rules", "name", "match", "path", "methods", "host", "limit", "burst", "cost",
     "identity", "tiers", "allow", "deny", "defaults", "lease", "size", "algorithm",
     "concurrency", "overrides", "mode", "penalty", "rollout", "headers", "action", "&a", "*a"]
)  # fmt: skip
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
    st.text(max_size=40), st.sampled_from(["5/minute", "1e400/second", "/login", "re:^/(a+)+$",
                                           "GET", "ip", "::/0", "a\r\nX: y"]),
)  # fmt: skip
_DATA = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(_KEYS, inner, max_size=6)),
    max_leaves=40,
)


def _check(ruleset: Any, problems: list[Problem]) -> None:
    assert ruleset is None or not any(p.severity == "error" for p in problems)
    for problem in problems:
        assert isinstance(problem, Problem)
        assert problem.line >= 0 and problem.column >= 0
        assert "Traceback" not in problem.reason


@fuzz
@given(raw=st.binary(max_size=2048), fmt=st.sampled_from(FORMATS))
def test_arbitrary_bytes_give_a_rule_set_or_problems(raw: bytes, fmt: str) -> None:
    _check(*parse_ruleset(raw, f"fuzz.{fmt}", fmt))


@fuzz
@given(data=_DATA)
def test_structured_documents_give_a_rule_set_or_problems(data: Any) -> None:
    text = json.dumps({"version": 1, "rules": [data]} if isinstance(data, dict) else data)
    _check(*parse_ruleset(text, "fuzz.json", "json"))
    _check(*parse_ruleset(text, "fuzz.yaml", "yaml"))  # YAML reads JSON too


@fuzz
@given(
    depth=st.integers(1, 20_000),
    opener=st.sampled_from(["[", '{"a":', "- ", "a = [", "{a: "]),
    fmt=st.sampled_from(FORMATS),
)
def test_deep_nesting_is_a_problem_not_a_crash(depth: int, opener: str, fmt: str) -> None:
    _check(*parse_ruleset(opener * depth, f"deep.{fmt}", fmt))


@fuzz
@given(fanout=st.integers(2, 12), levels=st.integers(1, 12))
def test_alias_bombs_are_refused_within_bounds(fanout: int, levels: int) -> None:
    lines = ["a0: &a0 [x]"]
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * fanout)}]")
    tracemalloc.start()
    try:
        result = load("\n".join(lines).encode(), "bomb.yaml", "yaml", quiet=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert not result.ok
    assert peak < 64 * 2**20  # a document of a few hundred bytes never costs 64 MiB
