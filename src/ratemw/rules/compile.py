"""Compile a validated :class:`RuleSet` into an immutable, fast :class:`Snapshot`.

Everything that can be decided once is decided here: path patterns go into a
:class:`PathIndex`, ``overrides`` become index sets, per-tier rates become
:class:`Policy` objects with their algorithm, and each candidate list records
whether it needs any per-request filtering at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Hashable, Mapping

from ratemw.algorithms import ConcurrencyLimit, build_algorithm
from ratemw.algorithms.concurrency import LocalSlots
from ratemw.request import RequestInfo
from ratemw.rules.matcher import PathIndex
from ratemw.rules.model import Rate, RuleSet
from ratemw.rules.policy import (
    CompiledRule,
    FastPath,
    Policy,
    TableFactory,
    fresh_table,
    no_decision,
    rule_digest,
)

__all__ = [
    "Candidates",
    "CompiledRule",
    "FastPath",
    "Policy",
    "Snapshot",
    "TableFactory",
    "compile_rules",
    "no_decision",
    "stable_bucket",
]

_MEMO_LIMIT = 10_000
#: (rules whose path matches, no conditions to check, fast-path policy or None)
Candidates = tuple[tuple["CompiledRule", ...], bool, "Policy | None"]


class Snapshot:
    """An immutable compiled rule set; ``version`` is its content digest."""

    def __init__(self, ruleset: RuleSet, tables: TableFactory = fresh_table) -> None:
        self.ruleset = ruleset
        self.version = (
            ruleset.digest or hashlib.sha256(json.dumps(repr(ruleset)).encode()).hexdigest()
        )
        self.tiers = ruleset.tiers
        self.default_tier = ruleset.default_tier
        self.rollout_percent = ruleset.rollout.enforce_percent if ruleset.rollout else 100.0
        rules = tuple(CompiledRule(r, i) for i, r in enumerate(ruleset.rules))
        for cr in rules:
            cr.always_enforce = cr.enforce and self.rollout_percent >= 100.0
        by_name = {r.name: r.index for r in rules}
        for cr in rules:
            cr.overrides = frozenset(by_name[n] for n in cr.rule.overrides if n in by_name)
            self._bind(cr, tables)
        self.rules = rules
        self.needs_tier = any(cr.tier_policies is not None for cr in rules)
        self._index = PathIndex((cr.index, cr.path) for cr in rules)
        self._candidates: dict[tuple[int, ...], Candidates] = {}
        #: path -> candidates(path): one dict lookup on the hot path. Bounded like the index.
        self.by_path: dict[str, Candidates] = {}
        self._pinned: dict[str, Candidates] = {}

    @staticmethod
    def _bind(cr: CompiledRule, tables: TableFactory) -> None:
        rule = cr.rule
        digest = rule_digest(rule)
        if rule.concurrency is not None:
            cr.concurrency = ConcurrencyLimit(rule.concurrency)
            cr.table_ids = (f"{rule.name}:{digest}:c",)
            cr.slots = tables(cr.table_ids[0], cr.concurrency)
            cr.slot_policy = LocalSlots(cr.concurrency, cr.slots)
            return

        def build(rates: tuple[Rate, ...], tier: str) -> tuple[Policy, ...]:
            out = []
            for i, rate in enumerate(rates):
                algo = build_algorithm(rule.algorithm, rate.count, rate.period_seconds, rule.burst)
                pid = f"{rule.name}:{digest}:{tier}:{i}"
                name = rule.name if i == 0 else f"{rule.name}.{i}"
                sid = f"{rule.name}|{tier}|{i}"
                table = tables(pid, algo)
                out.append(Policy(cr, name, rate, algo, table, pid, sid, tier or None))
            return tuple(out)

        limit = rule.limit
        if isinstance(limit, Mapping):
            cr.tier_policies = {tier: build(rates, tier) for tier, rates in limit.items()}
            all_policies = [p for ps in cr.tier_policies.values() for p in ps]
        else:
            cr.policies = build(limit or (), "")
            all_policies = list(cr.policies)
        cr.table_ids = tuple(p.id for p in all_policies)

    def candidates(self, path: str) -> Candidates:
        """Rules whose path matches, whether they need no further filtering, and
        the policy of the fast path (one unconditional, untiered rule with one
        rate, always enforced), if that is all there is."""
        hit = self.by_path.get(path)
        if hit is None:
            indices = self._index.lookup(path)
            hit = self._candidates.get(indices)
            if hit is None:
                rules = tuple(self.rules[i] for i in indices)
                simple = all(r.simple and not r.overrides for r in rules)
                fast = None
                if len(rules) == 1 and simple:
                    (r,) = rules
                    if r.always_enforce and r.tier_policies is None and len(r.policies) == 1:
                        fast = r.policies[0]
                hit = self._candidates[indices] = (rules, simple, fast)
            if len(self.by_path) >= _MEMO_LIMIT:
                self.by_path.clear()
                self.by_path.update(self._pinned)
            self.by_path[path] = hit
        return hit

    def pin(self, path: str) -> None:
        """Never take the fast path for ``path`` (ratemw's own endpoints: the general
        path answers them before any rule)."""
        rules, simple, _ = self.candidates(path)
        self._pinned[path] = self.by_path[path] = (rules, simple, None)

    def match(self, info: RequestInfo) -> tuple[CompiledRule, ...]:
        """The rules that apply to ``info``, in file order, overrides resolved."""
        rules, simple, _ = self.candidates(info.path)
        if simple or not rules:
            return rules
        return self.narrow(rules, info)

    def narrow(
        self, rules: tuple[CompiledRule, ...], info: RequestInfo
    ) -> tuple[CompiledRule, ...]:
        """Apply method, host, header and route conditions, then ``overrides``."""
        method, host, headers, route = info.method, info.host, info.headers, info.route
        applied = tuple(
            r for r in rules if r.simple or r.why_not(method, host, headers, route) is None
        )
        overridden: frozenset[int] = frozenset().union(*(r.overrides for r in applied))
        if overridden:
            applied = tuple(r for r in applied if r.index not in overridden)
        return applied

    def explain(self, info: RequestInfo) -> list[tuple[CompiledRule, str | None]]:
        """Every rule with ``None`` if it applies, else the reason it does not."""
        matched = {r.index for r in self.candidates(info.path)[0]}
        applying = self.match(info)
        applying_idx = {r.index for r in applying}
        out: list[tuple[CompiledRule, str | None]] = []
        for cr in self.rules:
            if cr.index in applying_idx:
                out.append((cr, None))
            elif cr.index not in matched:
                out.append((cr, f"path {info.path} does not match {cr.rule.match.path}"))
            else:
                reason = cr.why_not(info.method, info.host, info.headers, info.route)
                if reason is None:
                    by = [r.name for r in applying if cr.index in r.overrides]
                    reason = f"overridden by {', '.join(by)}"
                out.append((cr, reason))
        return out


def compile_rules(ruleset: RuleSet, tables: TableFactory = fresh_table) -> Snapshot:
    """Compile ``ruleset``; ``tables`` supplies (and may reuse) per-policy key tables."""
    return Snapshot(ruleset, tables)


def stable_bucket(key: Hashable) -> int:
    """A stable 0..99 share of an identity key, for ``rollout.enforce_percent``."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=4).digest(), "big") % 100
