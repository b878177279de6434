"""``Limiter`` and ``AsyncLimiter``: the one call every adapter makes.

Both share :class:`_LimiterCore`, which decides without I/O; they differ only
in ``decide`` being a coroutine and in ``close`` / ``aclose``.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ratemw._fast import fast_path
from ratemw.algorithms.concurrency import Slot
from ratemw.decision import Decision, Outcome
from ratemw.identity import AccessList, IdentityResolver
from ratemw.local import DEFAULT_MAX_KEYS, KeyTable
from ratemw.request import RequestInfo
from ratemw.rules.compile import Candidates, Snapshot, compile_rules, stable_bucket
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, ruleset_from_data
from ratemw.types import Clock, TierResolver

__all__ = ["AsyncLimiter", "Limiter", "SystemClock"]

RulesLike = RuleSet | Mapping[str, Any] | str | os.PathLike[str]


class SystemClock:
    """The real clock: ``time.monotonic`` for buckets, ``time.time`` for headers."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


_ALLOWED = Decision(200)  # no rule applied: nothing to render, nothing to release
_DENIED = Outcome(("deny",))

_live: weakref.WeakSet[_LimiterCore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for limiter in list(_live):
        limiter._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _Installed:
    """Everything one rule set needs, swapped in as a single reference."""

    __slots__ = ("allow", "deny", "lists", "resolver", "rollout", "snapshot")

    def __init__(self, snapshot: Snapshot, resolver: IdentityResolver) -> None:
        rs = snapshot.ruleset
        self.snapshot = snapshot
        self.resolver = resolver
        self.allow = AccessList(rs.allow, resolver)
        self.deny = AccessList(rs.deny, resolver)
        self.lists = not (self.allow.empty and self.deny.empty)
        peer_key = not resolver.config.trusted_proxies
        for cr in snapshot.rules:
            cr.key_of = resolver.key_function(cr.identity)
            for policy in cr.all_policies():
                policy.key_of = cr.key_of
                policy.peer_key = peer_key and cr.identity == ("ip",)
        self.rollout = snapshot.rollout_percent

    def bind(self, monotonic: Callable[[], float], wall: Callable[[], float]) -> None:
        """(Re)build the fast-path closures, which capture locks and the clock."""
        for cr in self.snapshot.rules:
            for policy in cr.all_policies():
                policy.lock = policy.table.lock
                policy.fast = fast_path(policy, monotonic, wall)


def _coerce(rules: RulesLike) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, Mapping):
        return ruleset_from_data(rules)
    return load_ruleset(Path(rules))


class _LimiterCore:
    """The I/O-free decision engine shared by :class:`Limiter` and :class:`AsyncLimiter`."""

    def __init__(
        self,
        rules: RulesLike,
        *,
        clock: Clock | None = None,
        tier_resolver: TierResolver | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        hash_key: bytes | str | None = None,
        enabled: bool = True,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._monotonic = self.clock.monotonic
        self._wall = self.clock.time
        self.tier_resolver = tier_resolver
        self.max_keys = max_keys
        self._enabled = enabled
        self._hash_key = hash_key
        self._tables: dict[str, KeyTable[Any]] = {}
        self._closed = False
        self._install(self._build(_coerce(rules)))
        _live.add(self)

    @property
    def enabled(self) -> bool:
        """When false every request is allowed (see ``ratemw.testing.disabled``)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        self._install(self._state)

    def _install(self, state: _Installed) -> None:
        # Three references, each consistent on its own: a request that reads the
        # old _by_path and the new _state still decides with one whole rule set.
        state.bind(self._monotonic, self._wall)
        self._state = state
        self._by_path = state.snapshot.by_path
        self._gated = state.lists or not self._enabled

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **options: Any) -> Any:
        """Load, validate and compile a rules file (YAML, TOML or JSON by extension).

        Raises :class:`ratemw.ConfigError` listing every problem with its line.
        """
        return cls(load_ruleset(Path(path)), **options)

    # -- rule sets --------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The compiled rule set in force."""
        return self._state.snapshot

    def update_rules(self, rules: RulesLike) -> Snapshot:
        """Swap in a new rule set atomically; unchanged rules keep their state.

        Raises :class:`ratemw.ConfigError` (and keeps the old rules) when invalid.
        """
        state = self._build(_coerce(rules))
        self._install(state)
        live = {tid for cr in state.snapshot.rules for tid in cr.table_ids}
        for pid in [p for p in self._tables if p not in live]:
            del self._tables[pid]
        return state.snapshot

    def _build(self, ruleset: RuleSet) -> _Installed:
        resolver = IdentityResolver(ruleset.identity, hash_key=self._hash_key)
        return _Installed(compile_rules(ruleset, self._table_for), resolver)

    def _table_for(self, policy_id: str, algorithm: Any) -> KeyTable[Any]:
        table = self._tables.get(policy_id)
        if table is None:
            table = self._tables[policy_id] = KeyTable(algorithm, self.max_keys)
        return table

    def reset(self) -> None:
        """Forget every key's state (all buckets full, no slots held)."""
        for table in self._tables.values():
            table.clear()

    def _after_fork(self) -> None:
        # A lock held by another thread at fork time would stay held forever in the child.
        for table in self._tables.values():
            table.renew_lock()
        self._install(self._state)

    # -- the decision -----------------------------------------------------

    def _tier(self, info: RequestInfo, snapshot: Snapshot) -> str | None:
        tier = info.tier
        if tier is None and self.tier_resolver is not None:
            tier = self.tier_resolver(info)
        if tier is None or tier not in snapshot.tiers:
            return snapshot.default_tier
        return tier

    def _gate(self, st: _Installed, info: RequestInfo) -> Decision | None:
        """Kill switch and allow/deny lists, checked before any rule."""
        if not self.enabled:
            return _ALLOWED
        if st.lists:
            ip = st.resolver.client_ip(info)
            if st.deny.contains(info, ip, st.resolver):
                return Decision(403, None, 0.0, self._wall, _DENIED)
            if st.allow.contains(info, ip, st.resolver):
                return _ALLOWED
        return None

    def _decide(self, info: RequestInfo) -> Decision:
        # The hot path (docs/design.md, "Hot path"): one dict lookup finds the rules
        # of the path; the common shape runs in a closure built for its policy
        # (ratemw._fast), everything else in _decide_all.
        if self._gated:
            return self._decide_gated(info)
        hit = self._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                decision = policy.fast(info)
                if decision is not None:
                    return decision
        return self._decide_all(self._state, hit, info)

    def _decide_gated(self, info: RequestInfo) -> Decision:
        st = self._state
        gated = self._gate(st, info)
        return gated if gated is not None else self._decide_all(st, None, info)

    def _decide_all(self, st: _Installed, hit: Candidates | None, info: RequestInfo) -> Decision:
        """The general case: several rules, conditions, tiers, shadow, concurrency."""
        snapshot = st.snapshot
        rules, simple, _ = hit if hit is not None else snapshot.candidates(info.path)
        if not simple and rules:
            rules = snapshot.narrow(rules, info)
        if not rules:
            return _ALLOWED
        now = self._monotonic()
        tier = self._tier(info, snapshot) if snapshot.needs_tier else None
        results: list[tuple[Any, Any]] = []
        violated: list[tuple[Any, str, float]] | None = None
        extra: list[tuple[Any, Any, int]] | None = None  # granted by shadow policies
        shadow: list[str] | None = None
        slots: list[Slot] | None = None
        action = "reject"
        for cr in rules:
            key = cr.key_of(info)
            if key is None:
                if cr.skip_missing:
                    continue
                key = ("ip", st.resolver.client_ip(info))
            enforce = cr.always_enforce or (cr.enforce and stable_bucket(key) < st.rollout)
            if cr.concurrency is not None:
                table = cr.slots
                assert table is not None
                with table.lock:
                    cstate = table.get(key, now)
                    acquired = cr.concurrency.acquire(cstate)
                if acquired:
                    slots = slots or []
                    slots.append(Slot(cstate, table.lock))
                elif enforce:
                    violated = violated or []
                    violated.append((None, cr.name, 1.0))
                    action = cr.rule.action
                elif shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
                continue
            cost = cr.cost
            for policy in cr.policies or cr.policies_for(tier):
                with policy.lock:
                    state = policy.table.get(key, now)
                    wait = policy.take(state, now, cost)
                if enforce:
                    results.append((policy, state))
                    if wait:
                        violated = violated or []
                        violated.append((policy, cr.name, wait))
                        action = cr.rule.action
                elif not wait:
                    extra = extra or []
                    extra.append((policy, state, cost))
                elif shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
        shadowed = tuple(shadow or ())
        if violated is None:
            if shadow is None and slots is None:
                return Decision(200, results, now, self._wall)
            return Decision(200, results, now, self._wall, Outcome((), shadowed, slots, action))
        # The request does not happen: whatever other rules granted goes back.
        failed = {id(p) for p, _, _ in violated}
        refunds = [(p, s, p.cost) for p, s in results if id(p) not in failed]
        for policy, state, cost in refunds + (extra or []):
            with policy.lock:
                policy.algorithm.give(state, now, cost)
        for slot in slots or ():
            slot.release()
        names = tuple(dict.fromkeys(name for _, name, _ in violated))
        wait = max(w for _, _, w in violated)
        outcome = Outcome(names, shadowed, None, action)
        return Decision(429, results, now, self._wall, outcome, wait)


class Limiter(_LimiterCore):
    """Decides, in-process, whether each request may proceed.

    ``rules`` is a :class:`RuleSet`, a mapping shaped like a rules file, or a
    path. ``clock`` (default: the system clock) is injectable for tests;
    ``tier_resolver`` maps a request to its tier; ``max_keys`` bounds each
    rule's key table; ``hash_key`` keys the digest of secrets (default:
    ``RATEMW_HASH_KEY``). Thread-safe.
    """

    #: ``decide(info) -> Decision``: allow or reject ``info``; never raises for request data.
    decide = _LimiterCore._decide

    def close(self) -> None:
        """Release all state. Idempotent."""
        self._closed = True
        self.reset()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLimiter(_LimiterCore):
    """The asyncio twin of :class:`Limiter`: ``await limiter.decide(info)``."""

    async def decide(self, info: RequestInfo) -> Decision:
        """Allow or reject ``info``; never raises for request data."""
        return self._decide(info)

    async def aclose(self) -> None:
        """Release all state. Idempotent."""
        self._closed = True
        self.reset()

    async def __aenter__(self) -> AsyncLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
