"""Compile a validated :class:`RuleSet` into an immutable, fast :class:`Snapshot`.

Everything that can be decided once is decided here: path patterns go into a
:class:`PathIndex`, ``overrides`` become index sets, per-tier rates become
:class:`Policy` objects with their algorithm, and each candidate list records
whether it needs any per-request filtering at all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ratemw.algorithms import ConcurrencyLimit, build_algorithm
from ratemw.algorithms.base import RateAlgorithm
from ratemw.algorithms.concurrency import LocalSlots
from ratemw.algorithms.tables import KeyTable
from ratemw.decision import Decision, Outcome, policy_field, sf_string
from ratemw.request import RequestInfo
from ratemw.rules.canonical import canonical_host
from ratemw.rules.matcher import PathIndex
from ratemw.rules.model import Rate, Rule, RuleSet
from ratemw.rules.paths import PathPattern, parse_path

__all__ = ["CompiledRule", "Policy", "Snapshot", "TableFactory", "compile_rules"]

_MEMO_LIMIT = 10_000
#: (rules whose path matches, no conditions to check, fast-path policy or None)
Candidates = tuple[tuple["CompiledRule", ...], bool, "Policy | None"]

#: (policy id, algorithm) -> the key table that keeps its per-identity state.
TableFactory = Callable[[str, Any], KeyTable[Any]]


def _fresh_table(policy_id: str, algorithm: Any) -> KeyTable[Any]:
    return KeyTable(algorithm)


def _rule_digest(rule: Rule) -> str:
    return hashlib.sha256(repr(rule).encode()).hexdigest()[:16]


class Policy:
    """One rate of one rule (for one tier), with the table of its keys."""

    __slots__ = (
        "acquire",
        "algorithm",
        "cost",
        "fast",
        "id",
        "key_of",
        "limit",
        "lock",
        "name",
        "near",
        "near_low",
        "peer_key",
        "policy_field",
        "quoted",
        "rate",
        "refund",
        "reject",
        "rule",
        "shared",
        "states",
        "stats",
        "store_id",
        "table",
        "take",
        "tier",
        "window_seconds",
    )

    def __init__(
        self,
        rule: CompiledRule,
        name: str,
        rate: Rate,
        algorithm: RateAlgorithm,
        table: KeyTable[Any],
        policy_id: str,
        store_id: str = "",
        tier: str | None = None,
    ) -> None:
        self.rule = rule
        self.tier = tier
        self.name = name
        self.rate = rate
        self.algorithm = algorithm
        self.table = table
        self.id = policy_id
        #: names the policy in a shared store: stable across processes and reloads
        self.store_id = store_id
        self.limit = rate.count
        self.window_seconds = rate.period_seconds
        # Header text that never changes for this policy, rendered once.
        self.quoted = sf_string(name)
        self.policy_field = policy_field(name, rate.count, rate.period_seconds)
        # Bound once: the hot path reads these instead of walking table/algorithm.
        self.take = algorithm.take
        self.states = table.data
        self.lock = table.lock
        self.cost = rule.cost
        # Identity of the rule, set by the limiter that installs the snapshot.
        self.key_of: Callable[[RequestInfo], Hashable | None] = _no_key
        self.peer_key = False
        #: the fast decision function (ratemw.limiter.fast), built by the limiter
        self.fast: FastPath = no_decision
        #: set when the limiter has a store: the policy's global face (ratemw.leases.bucket)
        self.shared: Any = None
        #: (key, now) -> (state, wait); (state, now) -> None. Replaced for shared policies.
        self.acquire: Callable[[Hashable, float], tuple[Any, float]] = self._acquire_local
        self.refund: Callable[[Any, float], None] = self._refund_local
        #: shared by every rejection this policy causes on the fast path
        self.reject = Outcome((rule.name,), (), None, rule.rule.action)
        #: counters of its (rule, route, tier) and the near-limit test, set by the limiter
        self.stats: Any = None
        #: is ``state`` near the limit? ``None``: compare ``state.tokens`` with ``near_low``
        self.near: Callable[[Any, float], bool] | None = _never
        self.near_low = 0.0

    def _acquire_local(self, key: Hashable, now: float) -> tuple[Any, float]:
        with self.lock:
            state = self.table.get(key, now)
            return state, self.take(state, now, self.cost)

    def _refund_local(self, state: Any, now: float) -> None:
        with self.lock:
            self.algorithm.give(state, now, self.cost)


class CompiledRule:
    """A rule ready for the hot path."""

    __slots__ = (
        "always_enforce",
        "concurrency",
        "cost",
        "enforce",
        "header_style",
        "headers",
        "host",
        "identity",
        "index",
        "key_of",
        "methods",
        "name",
        "ops",
        "overrides",
        "path",
        "policies",
        "route",
        "rule",
        "simple",
        "skip_missing",
        "slot_policy",
        "slots",
        "stats",
        "table_ids",
        "tier_policies",
    )

    def __init__(self, rule: Rule, index: int) -> None:
        self.rule = rule
        self.name = rule.name
        self.index = index
        m = rule.match
        self.path: PathPattern | None = parse_path(m.path) if m.path is not None else None
        # Flask, Starlette and Django answer HEAD with the GET view: a rule on GET that
        # let HEAD through would leave a status-code oracle open.
        methods = m.methods
        if methods is not None and "GET" in methods:
            methods = methods | {"HEAD"}
        self.methods = methods
        self.host = _host_pattern(m.host) if m.host else None
        self.headers = m.headers
        self.route = m.route
        self.identity = rule.identity
        self.enforce = rule.mode == "enforce"
        self.cost = rule.cost
        self.policies: tuple[Policy, ...] = ()
        self.tier_policies: Mapping[str, tuple[Policy, ...]] | None = None
        self.concurrency: ConcurrencyLimit | None = None
        self.slots: KeyTable[Any] | None = None
        #: acquires concurrency slots: LocalSlots, or SharedSlots with a store
        self.slot_policy: Any = None
        self.overrides: frozenset[int] = frozenset()
        self.skip_missing = rule.on_missing_identity == "skip"
        self.header_style = rule.headers
        self.table_ids: tuple[str, ...] = ()
        # Set by the limiter that installs the snapshot (it owns the identity resolver).
        self.key_of: Callable[[RequestInfo], Hashable | None] = _no_key
        self.always_enforce = self.enforce  # and no rollout share: set by the snapshot
        self.simple = not (self.methods or self.host or self.headers or self.route)
        #: operations state of the rule name and counters of a concurrency rule (limiter)
        self.ops: Any = None
        self.stats: Any = None

    def why_not(
        self, method: str, host: str, headers: Mapping[str, str], route: str | None
    ) -> str | None:
        """Why this rule does not apply to a request whose path matched, or ``None``."""
        if self.methods is not None and method.upper() not in self.methods:
            return f"method {method} is not one of {', '.join(sorted(self.methods))}"
        if self.host is not None and not _host_matches(self.host, host):
            return f"host {host or '(none)'} is not {self.host}"
        for name, value in self.headers:
            got = headers.get(name)
            if got is None:
                return f"header {name} is missing"
            if value != "*" and got != value:
                return f"header {name} is not {value!r}"
        if self.route is not None and route != self.route:
            return f"route {route or '(none)'} is not {self.route}"
        return None

    def all_policies(self) -> list[Policy]:
        """Every policy of the rule, across tiers."""
        if self.tier_policies is None:
            return list(self.policies)
        return [p for ps in self.tier_policies.values() for p in ps]

    def policies_for(self, tier: str | None) -> tuple[Policy, ...]:
        tiers = self.tier_policies
        if tiers is None:
            return self.policies
        return tiers.get(tier or "", ())


def _never(state: Any, now: float) -> bool:
    return False


def _no_key(info: RequestInfo) -> Hashable | None:
    return None


#: a policy's fast decision function (built by ``ratemw.limiter.fast``); returns ``None`` when
#: the request has no identity for the rule (the general path then applies the fallback)
FastPath = Callable[[RequestInfo], "Decision | None"]


def no_decision(info: RequestInfo) -> Decision | None:
    return None


def _host_pattern(text: str) -> str:
    text = text.strip()
    if text.startswith("*."):
        return "*." + canonical_host(text[2:])
    return canonical_host(text)


def _host_matches(pattern: str, host: str) -> bool:
    """``pattern`` from :func:`_host_pattern`; ``host`` as the request has it."""
    host = canonical_host(host)
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern


class Snapshot:
    """An immutable compiled rule set; ``version`` is its content digest."""

    def __init__(self, ruleset: RuleSet, tables: TableFactory = _fresh_table) -> None:
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
        digest = _rule_digest(rule)
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


def compile_rules(ruleset: RuleSet, tables: TableFactory = _fresh_table) -> Snapshot:
    """Compile ``ruleset``; ``tables`` supplies (and may reuse) per-policy key tables."""
    return Snapshot(ruleset, tables)


def stable_bucket(key: Hashable) -> int:
    """A stable 0..99 share of an identity key, for ``rollout.enforce_percent``."""
    return int.from_bytes(hashlib.blake2b(repr(key).encode(), digest_size=4).digest(), "big") % 100
