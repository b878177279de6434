"""``Limiter`` and ``AsyncLimiter``: the one call every adapter makes.

Both share :class:`_LimiterCore`, which decides without I/O; they differ only
in ``decide`` being a coroutine and in ``close`` / ``aclose``.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratemw._installed import Installed, store_breaker
from ratemw.decision import Decision, Outcome
from ratemw.engine import SharedEngine
from ratemw.identity import IdentityResolver
from ratemw.leasing import SharedBucket, StoreClosed
from ratemw.local import DEFAULT_MAX_KEYS, KeyTable
from ratemw.request import RequestInfo
from ratemw.rules.compile import Candidates, Snapshot, compile_rules, stable_bucket
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, ruleset_from_data
from ratemw.slots import DEFAULT_SLOT_TTL_SECONDS
from ratemw.types import Clock, TierResolver

if TYPE_CHECKING:
    from ratemw.store.base import Store

__all__ = ["AsyncLimiter", "Limiter", "SystemClock"]

RulesLike = RuleSet | Mapping[str, Any] | str | os.PathLike[str]
#: yields (policy, key, now) acquisitions, is sent (state, wait), returns the Decision
Plan = Generator[tuple[Any, Any, float], tuple[Any, float], Decision]


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


def _coerce(rules: RulesLike) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, Mapping):
        return ruleset_from_data(rules)
    return load_ruleset(Path(rules))


class _LimiterCore:
    """The I/O-free decision engine shared by :class:`Limiter` and :class:`AsyncLimiter`."""

    #: the fast path may not call the store (the async twin awaits it in decide)
    _local_fast_path = False

    def __init__(
        self,
        rules: RulesLike,
        *,
        clock: Clock | None = None,
        tier_resolver: TierResolver | None = None,
        max_keys: int = DEFAULT_MAX_KEYS,
        hash_key: bytes | str | None = None,
        enabled: bool = True,
        store: Store | None = None,
        redis_url: str | None = None,
        min_processes: int = 1,
        slot_ttl_seconds: float = DEFAULT_SLOT_TTL_SECONDS,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        if store is None and redis_url:
            store = self._store_for(redis_url)
        # Nothing here touches the store or starts a thread: that waits for first use.
        self.engine: Any = (
            self._engine_for(
                store,
                hash_key=hash_key,
                min_processes=min_processes,
                slot_ttl_seconds=slot_ttl_seconds,
            )
            if store is not None
            else None
        )
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

    @staticmethod
    def _store_for(url: str) -> Any:
        from ratemw.store.redis import RedisStore

        return RedisStore(url, breaker=store_breaker)

    @staticmethod
    def _engine_for(store: Any, **options: Any) -> Any:
        return SharedEngine(store, **options)

    @property
    def enabled(self) -> bool:
        """When false every request is allowed (see ``ratemw.testing.disabled``)."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = value
        self._install(self._state)

    def _install(self, state: Installed) -> None:
        # Three references, each consistent on its own: a request that reads the
        # old _by_path and the new _state still decides with one whole rule set.
        if self.engine is not None and not state.shared:
            state.share(self.engine, self._table_for)
        state.bind(self._monotonic, self._wall, local_only=self._local_fast_path)
        self._state = state
        self._by_path = state.snapshot.by_path
        self._gated = state.lists or state.verifier is not None or not self._enabled

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
        live |= {f"{tid}:shared" for tid in live}
        for pid in [p for p in self._tables if p not in live]:
            table = self._tables.pop(pid)
            if self.engine is not None and isinstance(table.algorithm, SharedBucket):
                # A changed or removed rule: its leases go back (LEASES.md §13).
                for _, entry in table.items():
                    leftover = entry.account.expire()
                    if leftover:
                        self.engine.give_later(table.algorithm, entry, leftover)
        return state.snapshot

    def _build(self, ruleset: RuleSet) -> Installed:
        resolver = IdentityResolver(ruleset.identity, hash_key=self._hash_key)
        return Installed(compile_rules(ruleset, self._table_for), resolver, self.clock)

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
        if self.engine is not None:
            self.engine.after_fork(self._state.buckets())
        self._install(self._state)

    # -- the decision -----------------------------------------------------

    def _tier(self, info: RequestInfo, snapshot: Snapshot) -> str | None:
        tier = info.tier
        if tier is None and self.tier_resolver is not None:
            tier = self.tier_resolver(info)
        if tier is None or tier not in snapshot.tiers:
            return snapshot.default_tier
        return tier

    def _gate(self, st: Installed, info: RequestInfo) -> Decision | None:
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
        # (ratemw._fast), everything else in _plan.
        hit = None if self._gated else self._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                decision = policy.fast(info)
                if decision is not None:
                    return decision
        return self._drive(self._plan(hit, info))

    def _plan(self, hit: Candidates | None, info: RequestInfo) -> Plan:
        """The general case (several rules, conditions, tiers, shadow, concurrency), as a
        generator: it yields ``(policy, key, now)`` for each rate to take and is sent
        ``(state, wait)`` back, so the sync and async limiters drive one implementation
        (the async one awaits the store where the sync one calls it)."""
        st = self._state
        if self._gated:
            if st.verifier is not None:
                info = st.verifier.enrich(info)  # verified claims: user, tenant, tier
            gated = self._gate(st, info)
            if gated is not None:
                return gated
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
        extra: list[tuple[Any, Any]] | None = None  # granted by shadow policies
        closed_rule: tuple[str, float] | None = None
        shadow: list[str] | None = None
        slots: list[Any] | None = None
        action = "reject"
        for cr in rules:
            key = cr.key_of(info)
            if key is None:
                if cr.skip_missing:
                    continue
                key = ("ip", st.resolver.client_ip(info))
            enforce = cr.always_enforce or (cr.enforce and stable_bucket(key) < st.rollout)
            if cr.concurrency is not None:
                try:
                    slot, wait = yield cr.slot_policy, key, now
                except StoreClosed as closed:
                    closed_rule = (cr.name, closed.retry_after)
                    continue
                if slot is not None:
                    slots = slots or []
                    slots.append(slot)
                elif enforce:
                    violated = violated or []
                    violated.append((None, cr.name, wait))
                    action = cr.rule.action
                elif shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
                continue
            for policy in cr.policies or cr.policies_for(tier):
                try:
                    state, wait = yield policy, key, now
                except StoreClosed as closed:
                    # The store is down and the rule says "closed": 503, never 429 or 500.
                    closed_rule = (cr.name, closed.retry_after)
                    continue
                if enforce:
                    results.append((policy, state))
                    if wait:
                        violated = violated or []
                        violated.append((policy, cr.name, wait))
                        action = cr.rule.action
                elif not wait:
                    extra = extra or []
                    extra.append((policy, state))
                elif shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
        shadowed = tuple(shadow or ())
        if violated is None and closed_rule is None:
            if shadow is None and slots is None:
                return Decision(200, results, now, self._wall)
            return Decision(200, results, now, self._wall, Outcome((), shadowed, slots, action))
        # The request does not happen: whatever other rules granted goes back.
        failed = {id(p) for p, _, _ in violated or ()}
        for policy, state in results + (extra or []):
            if id(policy) not in failed:
                policy.refund(state, now)
        for slot in slots or ():
            slot.release()
        if violated is None:
            assert closed_rule is not None
            name, retry = closed_rule
            return Decision(503, results, now, self._wall, Outcome((name,), shadowed), retry)
        names = tuple(dict.fromkeys(name for _, name, _ in violated))
        wait = max(w for _, _, w in violated)
        outcome = Outcome(names, shadowed, None, action)
        return Decision(429, results, now, self._wall, outcome, wait)

    def _drive(self, plan: Plan) -> Decision:
        """Run a plan, calling the store (if any) synchronously."""
        try:
            request = next(plan)
            while True:
                policy, key, now = request
                try:
                    answer = policy.acquire(key, now)
                except StoreClosed as closed:
                    request = plan.throw(closed)
                else:
                    request = plan.send(answer)
        except StopIteration as done:
            result: Decision = done.value
            return result


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
        """Give leased tokens back, stop the reconcile loop, release all state. Idempotent."""
        if not self._closed and self.engine is not None:
            self.engine.close()
        self._closed = True
        self.reset()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLimiter(_LimiterCore):
    """The asyncio twin of :class:`Limiter`: ``await limiter.decide(info)``.

    With a store (``redis_url=`` or an ``AsyncRedisStore``) it awaits the asyncio
    client and runs its reconcile loop as a task: nothing blocks the event loop.
    """

    _local_fast_path = True

    @staticmethod
    def _store_for(url: str) -> Any:
        from ratemw.aio.store.redis import AsyncRedisStore

        return AsyncRedisStore(url, breaker=store_breaker)

    @staticmethod
    def _engine_for(store: Any, **options: Any) -> Any:
        from ratemw.aio.engine import AsyncSharedEngine

        return AsyncSharedEngine(store, **options)

    async def decide(self, info: RequestInfo) -> Decision:
        """Allow or reject ``info``; never raises for request data."""
        hit = None if self._gated else self._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                decision = policy.fast(info)
                if decision is not None:
                    return decision
        plan = self._plan(hit, info)
        try:
            request = next(plan)
            while True:
                policy, key, now = request
                try:
                    if policy.shared is not None:
                        answer = await policy.shared.aacquire(key, now)
                    else:
                        answer = policy.acquire(key, now)
                except StoreClosed as closed:
                    request = plan.throw(closed)
                else:
                    request = plan.send(answer)
        except StopIteration as done:
            result: Decision = done.value
            return result

    async def aclose(self) -> None:
        """Give leased tokens back, stop the reconcile task, release all state. Idempotent."""
        if not self._closed and self.engine is not None:
            await self.engine.aclose()
        self._closed = True
        self.reset()

    async def __aenter__(self) -> AsyncLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
