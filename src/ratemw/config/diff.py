"""What changes between two rule sets: rules added, removed, and limits raised or lowered.

Rules are matched by name. Within a rule, rates are compared per tier (``None``
for an untiered rule) and per period: ``100/minute`` → ``50/minute`` is lowered,
``10/second`` → ``20/second`` raised; a period present on one side only is a
limit added or removed. Burst and concurrency compare the same way; any other
difference is listed by field name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from ratemw.rules.model import Rate, Rule, RuleSet

__all__ = ["LimitChange", "RuleChange", "RulesDiff", "diff_rulesets", "format_diff"]

# Compared in detail (limits) or not at all (positions).
_SKIPPED = ("name", "limit", "burst", "concurrency", "line")
_SETTINGS = ("defaults", "identity", "tiers", "allow", "deny", "rollout")


@dataclass(frozen=True, slots=True)
class LimitChange:
    """One limit of one rule: ``what`` is ``"rate"``, ``"burst"`` or ``"concurrency"``;
    ``change`` is ``"raised"``, ``"lowered"``, ``"added"``, ``"removed"`` or ``"changed"``
    (the same rate per second over another period)."""

    what: str
    tier: str | None
    before: str | None
    after: str | None
    change: str

    def __str__(self) -> str:
        where = f" for tier {self.tier!r}" if self.tier is not None else ""
        if self.change == "added":
            return f"{self.what}{where} {self.after} added"
        if self.change == "removed":
            return f"{self.what}{where} {self.before} removed"
        return f"{self.what}{where} {self.change}: {self.before} -> {self.after}"


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A rule present in both rule sets that differs."""

    name: str
    limits: tuple[LimitChange, ...] = ()
    fields: tuple[str, ...] = ()  # other settings that differ: "match", "identity", ...


@dataclass(frozen=True, slots=True)
class RulesDiff:
    """Everything that differs; empty (falsy) when the rule sets are equivalent."""

    added: tuple[Rule, ...] = ()
    removed: tuple[Rule, ...] = ()
    changed: tuple[RuleChange, ...] = ()
    settings: tuple[str, ...] = ()  # top-level sections that differ

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.settings)

    @property
    def lowered(self) -> tuple[tuple[str, LimitChange], ...]:
        """``(rule name, change)`` of every limit that got stricter."""
        return tuple(
            (c.name, lc) for c in self.changed for lc in c.limits if lc.change == "lowered"
        )

    @property
    def raised(self) -> tuple[tuple[str, LimitChange], ...]:
        return tuple((c.name, lc) for c in self.changed for lc in c.limits if lc.change == "raised")


def _tiers(rule: Rule) -> dict[str | None, tuple[Rate, ...]]:
    if rule.limit is None:
        return {}
    if isinstance(rule.limit, Mapping):
        return {tier: rates for tier, rates in rule.limit.items()}
    return {None: rule.limit}


def _direction(before: float, after: float) -> str | None:
    return "raised" if after > before else "lowered" if after < before else None


def _compare_rates(old: Rule, new: Rule) -> list[LimitChange]:
    out: list[LimitChange] = []
    before, after = _tiers(old), _tiers(new)
    for tier in list(before) + [t for t in after if t not in before]:
        old_rates = {r.period_seconds: r for r in before.get(tier, ())}
        new_rates = {r.period_seconds: r for r in after.get(tier, ())}
        only_old = set(old_rates) - set(new_rates)
        only_new = set(new_rates) - set(old_rates)
        if len(only_old) == len(only_new) == 1:
            # One rate rewritten with another period (10/second -> 300/minute): compare
            # the rates per second.
            was, now = old_rates.pop(only_old.pop()), new_rates.pop(only_new.pop())
            way = _direction(was.per_second, now.per_second) or "changed"  # other burst
            out.append(LimitChange("rate", tier, str(was), str(now), way))
        for period in sorted(set(old_rates) | set(new_rates)):
            o, n = old_rates.get(period), new_rates.get(period)
            if o is None and n is not None:
                out.append(LimitChange("rate", tier, None, str(n), "added"))
            elif n is None and o is not None:
                out.append(LimitChange("rate", tier, str(o), None, "removed"))
            elif o is not None and n is not None:
                counted = _direction(o.count, n.count)
                if counted:
                    out.append(LimitChange("rate", tier, str(o), str(n), counted))
    return out


def _compare_numbers(what: str, old: int | None, new: int | None) -> list[LimitChange]:
    if old == new:
        return []
    if old is None or new is None:
        change = "added" if old is None else "removed"
        return [LimitChange(what, None, _text(old), _text(new), change)]
    return [LimitChange(what, None, str(old), str(new), _direction(old, new) or "raised")]


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _compare_rule(old: Rule, new: Rule) -> RuleChange | None:
    limits = _compare_rates(old, new)
    limits += _compare_numbers("burst", old.burst, new.burst)
    limits += _compare_numbers("concurrency", old.concurrency, new.concurrency)
    other = tuple(
        f.name
        for f in fields(Rule)
        if f.name not in _SKIPPED and getattr(old, f.name) != getattr(new, f.name)
    )
    if not limits and not other:
        return None
    return RuleChange(old.name, tuple(limits), other)


def diff_rulesets(old: RuleSet, new: RuleSet) -> RulesDiff:
    """What changes when ``new`` replaces ``old``."""
    old_rules = {r.name: r for r in old.rules}
    new_rules = {r.name: r for r in new.rules}
    changed = [
        change
        for name, rule in old_rules.items()
        if name in new_rules
        for change in [_compare_rule(rule, new_rules[name])]
        if change is not None
    ]
    return RulesDiff(
        added=tuple(r for r in new.rules if r.name not in old_rules),
        removed=tuple(r for r in old.rules if r.name not in new_rules),
        changed=tuple(changed),
        settings=tuple(s for s in _SETTINGS if getattr(old, s) != getattr(new, s)),
    )


def _limit_text(rule: Rule) -> str:
    if rule.concurrency is not None:
        return f"concurrency {rule.concurrency}"
    parts = [
        (f"{tier}: " if tier is not None else "") + ", ".join(str(r) for r in rates)
        for tier, rates in _tiers(rule).items()
    ]
    return "; ".join(parts)


def format_diff(diff: RulesDiff) -> list[str]:
    """Lines for people: ``+`` added, ``-`` removed, ``~`` changed."""
    lines = [f"+ rule {r.name!r} added ({_limit_text(r)})" for r in diff.added]
    lines += [f"- rule {r.name!r} removed ({_limit_text(r)})" for r in diff.removed]
    for change in diff.changed:
        lines += [f"~ rule {change.name!r}: {limit}" for limit in change.limits]
        if change.fields:
            lines.append(f"~ rule {change.name!r}: changed {', '.join(change.fields)}")
    lines += [f"~ {section} changed" for section in diff.settings]
    return lines
