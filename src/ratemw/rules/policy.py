"""The compiled forms of a rule: :class:`CompiledRule` (match, identity, per-tier
policies) and :class:`Policy` (one rate of one rule: its algorithm and key table).

The limiter that installs a snapshot fills in what needs a clock, a store or a resolver
(the fast path, the shared face, the identity function); until then a policy decides
nothing (:func:`no_decision`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from ratemw.algorithms import ConcurrencyLimit
from ratemw.algorithms.base import RateAlgorithm
from ratemw.algorithms.tables import KeyTable
from ratemw.decision import Decision, Outcome, policy_field, sf_string
from ratemw.request import RequestInfo
from ratemw.rules.canonical import canonical_host
from ratemw.rules.model import Rate, Rule
from ratemw.rules.paths import PathPattern, parse_path

__all__ = ["CompiledRule", "FastPath", "Policy", "TableFactory", "fresh_table", "no_decision",
           "rule_digest"]  # fmt: skip


#: (policy id, algorithm) -> the key table that keeps its per-identity state.
TableFactory = Callable[[str, Any], KeyTable[Any]]


def fresh_table(policy_id: str, algorithm: Any) -> KeyTable[Any]:
    return KeyTable(algorithm)


def rule_digest(rule: Rule) -> str:
    return hashlib.sha256(repr(rule).encode()).hexdigest()[:16]


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
