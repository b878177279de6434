"""What ``Limiter`` and ``AsyncLimiter`` share: :class:`_LimiterCore`, which decides
without I/O (the twins in :mod:`ratemw.limiter.limiters` differ only in ``decide``
being a coroutine and in ``close`` / ``aclose``)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratemw._deps import require
from ratemw.algorithms.tables import DEFAULT_MAX_KEYS, KeyTable
from ratemw.decision import Decision, Outcome
from ratemw.errors import (
    ConfigError,
    MissingDependency,
    MissingExtra,
    Problem,
    StoreClosed,
    log_identity_failure,
)
from ratemw.identity.resolver import IdentityResolver
from ratemw.leases.bucket import SharedBucket
from ratemw.leases.engine import SharedEngine
from ratemw.leases.slots import DEFAULT_SLOT_TTL_SECONDS
from ratemw.limiter.installed import Installed
from ratemw.limiter.ops_face import OperationsFace
from ratemw.limiter.plan import ALLOWED, Plan, general_plan
from ratemw.ops import otel
from ratemw.ops.config import OpsConfig
from ratemw.ops.measures import Brownout
from ratemw.ops.passes import Challenges
from ratemw.ops.registry import all_limiters, register
from ratemw.ops.runtime import Operations
from ratemw.request import RequestInfo
from ratemw.rules.compile import Snapshot, compile_rules
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, ruleset_from_data
from ratemw.store.breaker import store_breaker
from ratemw.types import Clock, TierResolver

if TYPE_CHECKING:
    from ratemw.store.base import Store

__all__ = ["RulesLike", "SystemClock", "require_extras"]

RulesLike = RuleSet | Mapping[str, Any] | str | os.PathLike[str]


class SystemClock:
    """The real clock: ``time.monotonic`` for buckets, ``time.time`` for headers."""

    monotonic = staticmethod(time.monotonic)
    time = staticmethod(time.time)


_DENIED = Outcome(("deny",))
#: the path memo of a gated limiter: always empty (never written)
_NO_FAST_PATH: dict[str, Any] = {}


def _after_fork_in_child() -> None:
    for limiter in all_limiters():
        limiter._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _url_of(store: Any) -> str | None:
    target = getattr(store, "_target", None)
    url = getattr(target, "url", None)
    return url if isinstance(url, str) else None


def require_extras(ruleset: RuleSet) -> None:
    """Raise :class:`~ratemw.errors.MissingExtra` when ``ruleset`` needs an optional
    dependency that is not installed (``identity.jwt`` needs PyJWT: ``ratemw[jwt]``).

    Limiters call it whenever they load rules, so a missing extra stops a limiter from
    being built (or a live version from being swapped in), never a request.
    """
    if ruleset.identity.jwt is None:
        return
    try:
        require("jwt", extra="jwt", purpose="identity.jwt (JWT identities and tiers)")
    except MissingDependency as exc:
        raise MissingExtra([Problem(ruleset.source, 0, 0, str(exc))]) from None


def _coerce(rules: RulesLike) -> RuleSet:
    if isinstance(rules, RuleSet):
        return rules
    if isinstance(rules, Mapping):
        return ruleset_from_data(rules)
    return load_ruleset(Path(rules))


class _LimiterCore(OperationsFace):
    """The I/O-free decision engine shared by :class:`Limiter` and :class:`AsyncLimiter`."""

    #: the fast path may not call the store (the async twin awaits it in decide)
    _local_fast_path = False

    def _set_tracing(self, on: bool) -> None:
        """Annotate each decision on the current span while ``on`` (the twins do it)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "decide" in cls.__dict__ and "decide_nowait" not in cls.__dict__:
            # decide_nowait is what adapters call: for Limiter, and for a subclass with a
            # decide() of its own, it is decide() (whose coroutine, if any, they await).
            cls.decide_nowait = cls.decide  # type: ignore[attr-defined]

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
        operations: OpsConfig | Mapping[str, Any] | None = None,
        record: Any = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        if store is None and redis_url:
            store = self._store_for(redis_url)
        ops_config = OpsConfig.coerce(operations)
        # Nothing here touches the store; the engine's thread waits for first use (the
        # operations loop starts below unless its interval is 0).
        self.engine: Any = (
            self._engine_for(
                store,
                app=ops_config.app,
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
        self.ops = Operations(
            ops_config,
            owner=self,
            hash_key=hash_key,
            redis_url=redis_url or _url_of(store),
            wall=self._wall,
        )
        self._brownout: Brownout | None = None
        self._plans = 0
        self._challenge = Challenges(ops_config, self._wall)
        self._install(self._build(_coerce(rules)))
        register(self)
        self.ops.start()
        # Recording for replay (docs/replay.md): wraps decide, only when asked for.
        self.recorder: Any = None
        if record is not None:
            from ratemw.limiter.record import attach

            self.recorder = attach(self, record)
        if otel.refresh():  # and every operations pass: tracing follows the provider
            self._set_tracing(True)  # after the recorder: it wraps what the recorder bound

    @staticmethod
    def _store_for(url: str) -> Any:
        from ratemw.store.redis import RedisStore

        # Breakers that name the URL (redacted) log an outage's start and end.
        return RedisStore(url, breaker=partial(store_breaker, url))

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
        state.observe(self.ops)
        state.brown_out(self._brownout, self._table_for, self.engine)
        state.bind(self._monotonic, self._wall, local_only=self._local_fast_path)
        if state.challenges:
            state.snapshot.pin(self._challenge.path)
        self._state = state
        self._gated = state.lists or state.verifier is not None or not self._enabled
        # Gated (kill switch, access lists, JWT), no path may take the fast path: the hot
        # path then looks the path up in an empty dict, and tests nothing else.
        self._by_path = _NO_FAST_PATH if self._gated else state.snapshot.by_path

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
        try:
            state = self._build(_coerce(rules))
        except ConfigError:
            self.ops.stats.count_reload(False)
            raise
        self._install(state)
        self.ops.stats.count_reload(True)
        self._prune(state)
        return state.snapshot

    def _prune(self, state: Installed) -> None:
        live = {tid for cr in state.snapshot.rules for tid in cr.table_ids}
        live |= {p.id for p in (state.brownout or {}).values()}
        live |= {f"{tid}:shared" for tid in live}
        for pid in [p for p in self._tables if p not in live]:
            table = self._tables.pop(pid)
            if self.engine is not None and isinstance(table.algorithm, SharedBucket):
                # A changed or removed rule: its leases go back (LEASES.md §13).
                for _, entry in table.items():
                    leftover = entry.account.expire()
                    if leftover:
                        self.engine.give_later(table.algorithm, entry, leftover)

    def _build(self, ruleset: RuleSet) -> Installed:
        require_extras(ruleset)
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
        if not self._closed:
            self.ops.start()

    # -- the decision -----------------------------------------------------

    def _tier(self, info: RequestInfo, snapshot: Snapshot) -> str | None:
        tier = info.tier
        if tier is None and self.tier_resolver is not None:
            try:
                tier = self.tier_resolver(info)
            except Exception as exc:  # one broken resolver must not switch every rule off
                log_identity_failure(exc, "the tier resolver", "the request gets the default tier")
                tier = None
        if tier is None or tier not in snapshot.tiers:
            return snapshot.default_tier
        return tier

    def _gate(self, st: Installed, info: RequestInfo) -> Decision | None:
        """Kill switch and allow/deny lists, checked before any rule."""
        if not self.enabled:
            return ALLOWED
        if st.lists:
            address = st.resolver.client_address(info)
            if st.deny.contains(info, address, st.resolver):
                return Decision(403, None, 0.0, self._wall, _DENIED)
            if st.allow.contains(info, address, st.resolver):
                return ALLOWED
        return None

    @staticmethod
    def _key_for(st: Installed, rule: str, info: RequestInfo) -> Any:
        for cr in st.snapshot.rules:
            if cr.name == rule and cr.rule.action == "challenge":
                key = cr.key_of(info)
                return key if key is not None else ("ip", st.resolver.client_ip(info))
        return None

    def _decide(self, info: RequestInfo) -> Decision:
        # The hot path (docs/design.md, "Hot path"): one dict lookup finds the rules
        # of the path; the common shape runs in a closure built for its policy
        # (ratemw.limiter.fast), everything else in _plan.
        # Recording (ratemw.limiter.record) mirrors these lines: change both together.
        hit = self._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                # Read, then called: `policy.fast(info)` is a method lookup on a slot,
                # which CPython 3.11 cannot specialise (about 100 instructions).
                fast = policy.fast
                decision = fast(info)
                if decision is not None:
                    return decision
        return self._drive(self._plan(hit, info))

    #: the general case, a generator: see ratemw.limiter.plan
    _plan = general_plan

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
