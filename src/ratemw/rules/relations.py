"""How the rules of a rule set relate: overrides, their cycles, hidden rules, conflicts.

Each check reports through ``add`` (:class:`Report`: how :mod:`ratemw.rules.validate`
records a problem about one rule). Matches are compared conservatively: a rule is
reported as hidden only when the overriding rule's match certainly covers it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any, Protocol

from ratemw.rules._source import Path
from ratemw.rules.model import Match, Rule
from ratemw.rules.paths import PathPattern, parse_path

__all__ = ["Report", "check_conflicts", "check_cycles", "check_overrides"]


class Report(Protocol):
    """Records a problem about rule ``index`` (``None``: the document) at ``path``."""

    def __call__(self, index: int | None, path: Path, reason: str, warn: bool = False) -> None: ...


def check_overrides(rules: Sequence[Rule], names: dict[str, int], add: Report) -> None:
    """Overrides naming no rule, and rules an overriding rule hides everywhere (warnings)."""
    for index, rule in enumerate(rules):
        for i, target in enumerate(rule.overrides):
            if target not in names:
                hint = difflib.get_close_matches(target, list(names), n=1, cutoff=0.6)
                mean = f"; did you mean {hint[0]!r}?" if hint else ""
                add(index, ("overrides", i), f"overrides {target!r}, which names no rule{mean}")
            elif names[target] != index and _match_covers(rule.match, rules[names[target]].match):
                reason = f"can never apply: rule {rule.name!r} (line {rule.line}) overrides it"
                add(names[target], ("match",), f"{reason} wherever it matches", warn=True)


def check_cycles(rules: Sequence[Rule], names: dict[str, int], add: Report) -> None:
    """Each cycle of ``overrides``, reported once at its first rule."""
    # Colour DFS: meeting a rule that is still on the stack closes a cycle.
    state: dict[str, int] = {}
    reported: set[frozenset[str]] = set()

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        stack.append(name)
        for target in rules[names[name]].overrides:
            if target in names and state.get(target) == 1:
                cycle = stack[stack.index(target) :]
                if frozenset(cycle) not in reported:
                    reported.add(frozenset(cycle))
                    first = min(cycle, key=lambda n: names[n])
                    ring = [*cycle[cycle.index(first) :], *cycle[: cycle.index(first)], first]
                    add(
                        names[first],
                        ("overrides",),
                        f"overrides form a cycle: {' -> '.join(ring)}",
                    )
            elif target in names and target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = 2

    for name in names:
        if name not in state:
            visit(name, [])


def check_conflicts(rules: Sequence[Rule], add: Report) -> None:
    """Two rules with the same match, identity, mode and kind that should be one."""
    seen: dict[tuple[Any, ...], int] = {}
    for index, rule in enumerate(rules):
        kind = "concurrency" if rule.concurrency is not None else "rate"
        key = (_match_key(rule.match), tuple(sorted(rule.identity)), rule.mode, kind)
        first = rules[seen.setdefault(key, index)]
        if first is rule or first.name in rule.overrides or rule.name in first.overrides:
            continue
        advice = "merge them into one rule with a list of limits"
        if kind == "concurrency":
            advice = "keep one concurrency rule"
        reason = f"same match, identity and mode as rule {first.name!r} (line {first.line})"
        add(index, ("match",), f"conflicts: {reason}; {advice}")


def _path_key(text: str | None) -> Any:
    if text is None:
        return None
    try:
        pattern = parse_path(text)
    except ValueError:
        return text
    return (pattern.kind, pattern.segments, pattern.regex.pattern if pattern.regex else None)


def _match_key(m: Match) -> Any:
    return (_path_key(m.path), m.methods, m.host, tuple(sorted(m.headers)), m.route)


def _match_covers(wide: Match, narrow: Match) -> bool:
    """Conservatively: does ``wide`` match every request ``narrow`` matches?"""
    if wide.route is not None and wide.route != narrow.route:
        return False
    if wide.host is not None and wide.host != narrow.host:
        return False
    if wide.methods is not None and (narrow.methods is None or not narrow.methods <= wide.methods):
        return False
    have = dict(narrow.headers)
    for name, want in wide.headers:
        if name not in have or (want != "*" and want != have[name]):
            return False
    if wide.path is None:
        return True
    if narrow.path is None:
        return False
    try:
        outer: PathPattern = parse_path(wide.path)
        inner = parse_path(narrow.path)
    except ValueError:
        return False
    return outer.covers(inner)
