"""What the sync and async engines share: bookkeeping and store-call arguments, no I/O."""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

from ratemw.errors import StoreError
from ratemw.leases.account import LeaseEntry, TakeAnswer, local_share
from ratemw.leases.bucket import SharedBucket
from ratemw.ops import otel
from ratemw.ops.stats import STORE_BUCKETS, Histogram
from ratemw.store._keys import KeyBuilder
from ratemw.store.base import TakeMode, TakeResult, WindowResult

if TYPE_CHECKING:
    from ratemw.algorithms.token_bucket import TokenBucket
    from ratemw.store.breaker import CircuitBreaker

__all__ = ["HEARTBEAT_INTERVALS", "LIVENESS_SECONDS", "EngineBase", "Metered"]

#: a process silent this long no longer counts in P: heartbeats go every 1.0-1.6 s, so
#: one lost heartbeat does not drop a live process
LIVENESS_SECONDS = 4.0
#: heartbeats go every this many reconcile intervals (1 s by default, within liveness)
HEARTBEAT_INTERVALS = 2.0
_Tracked = tuple[SharedBucket, Hashable, LeaseEntry]


#: store methods whose latency and failures ratemw_store_* metrics report
_METERED = frozenset({
    "take", "take_many", "give", "window_take", "window_give", "slot_acquire", "slot_renew",
    "slot_release", "heartbeat",
})  # fmt: skip


class Metered:
    """A store seen through the engine: every call timed, every failure counted, and
    traced (a span per call) while OpenTelemetry is on."""

    def __init__(self, store: Any, engine: EngineBase, awaited: bool) -> None:
        self._store = store
        self._engine = engine
        self._awaited = awaited

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._store, name)
        if name not in _METERED:
            return attr
        engine = self._engine
        clock = time.perf_counter
        if self._awaited:

            async def timed_async(*args: Any, **kwargs: Any) -> Any:
                started = clock()
                try:
                    if otel.active:
                        with otel.store_span(name):
                            return await attr(*args, **kwargs)
                    return await attr(*args, **kwargs)
                except StoreError:
                    engine.store_errors += 1
                    raise
                finally:
                    engine.latency.observe(clock() - started)

            return timed_async

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = clock()
            try:
                if otel.active:
                    with otel.store_span(name):
                        return attr(*args, **kwargs)
                return attr(*args, **kwargs)
            except StoreError:
                engine.store_errors += 1
                raise
            finally:
                engine.latency.observe(clock() - started)

        return timed


class EngineBase:
    """Per-limiter state of global limits: P, tracked leases, pending gives."""

    awaited = False  # the asyncio twin awaits its store

    def __init__(
        self,
        store: Any,
        *,
        app: str = "default",
        hash_key: bytes | str | None = None,
        min_processes: int = 1,
        interval_seconds: float = 0.5,
        call_wait_seconds: float = 0.1,
        slot_ttl_seconds: float = 30.0,
    ) -> None:
        #: the store, metered: ``raw_store`` is the store itself
        self.raw_store = store
        self.store: Any = Metered(store, self, self.awaited)
        self.store_errors = 0
        self.latency = Histogram(STORE_BUCKETS)
        self.slot_ttl = slot_ttl_seconds
        self.keys = KeyBuilder(app, hash_key=hash_key)
        self.min_processes = max(1, min_processes)
        self.processes = self.min_processes  # P_exp: max(configured minimum, last seen P)
        self.interval = interval_seconds
        #: a heartbeat is due this long after the last one (the passes between make none)
        self.heartbeat_every = HEARTBEAT_INTERVALS * interval_seconds
        self._beat_at = -float("inf")  # monotonic time of the last heartbeat sent
        #: set by the operations loop: a counter the heartbeat reads in the same call
        #: (the version of bans and brownout), so that checking it costs no round trip
        self.watch_key: str | None = None
        self.watched: int | None = None  # its value at the last heartbeat
        self.watched_at = -float("inf")  # monotonic time of that heartbeat
        self.call_wait = call_wait_seconds
        self.degraded = False
        self.round_trips = 0  # every store call, heartbeats and gives included
        self.lease_calls = 0  # takes made to decide requests or refill leases
        self.outage_admits = 0  # tokens admitted while the store was unreachable
        self.debited = 0  # of those, debited from the store once it returned
        self._lock = threading.Lock()
        self._tracked: dict[tuple[int, Hashable], _Tracked] = {}
        self._refresh: dict[tuple[int, Hashable], _Tracked] = {}
        self._gives: list[tuple[SharedBucket, LeaseEntry, int]] = []
        self._shares: dict[tuple[int, int], TokenBucket] = {}
        self._pid = 0
        self._member = ""
        #: slots held by this process: slot id -> (slot, when it was last renewed)
        self.held: dict[str, tuple[Any, float]] = {}

    def heartbeat_due(self, now: float) -> bool:
        """True (and the heartbeat counted as sent at ``now``) when one is due."""
        if now - self._beat_at < self.heartbeat_every:
            return False
        self._beat_at = now
        return True

    def heartbeat_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"liveness_seconds": LIVENESS_SECONDS}
        if self.watch_key is not None:
            args["watch"] = self.watch_key
        return args

    def heard(self, processes: int, watched: int | None) -> None:
        """What a heartbeat answered: ``P``, and the watched counter."""
        self.processes = max(self.min_processes, processes)
        if watched is not None:
            self.watched, self.watched_at = watched, time.monotonic()

    def store_key(self, bucket: SharedBucket, key: Hashable) -> str:
        return self.keys.key(bucket.store_id, key, "w" if bucket.windowed else "g")

    def give_later(self, bucket: SharedBucket, entry: LeaseEntry, tokens: int) -> None:
        with self._lock:
            self._gives.append((bucket, entry, tokens))

    def track(self, bucket: SharedBucket, key: Hashable, entry: LeaseEntry) -> None:
        self._tracked[(id(bucket), key)] = (bucket, key, entry)

    def wants_refresh(self, bucket: SharedBucket, key: Hashable, entry: LeaseEntry) -> None:
        self._refresh[(id(bucket), key)] = (bucket, key, entry)

    def hold_slot(self, slot: Any, ttl: float) -> None:
        self.held[slot.slot_id] = (slot, time.monotonic())

    def due_renewals(self, now: float, ttl: float) -> list[Any]:
        """Held slots older than a third of their lifetime (LEASES.md §10)."""
        return [slot for slot, since in list(self.held.values()) if now - since >= ttl / 3]

    def local_share(self, bucket: SharedBucket) -> TokenBucket:
        """The bucket each process falls back to while the store is unreachable."""
        p = self.processes
        share = self._shares.get((id(bucket), p))
        if share is None:
            share = self._shares[(id(bucket), p)] = local_share(
                bucket.rate_per_second, bucket.burst, p
            )
        return share

    def retry_after(self, now: float) -> float:
        """How long a ``closed`` rule tells clients to wait: until a breaker probes again."""
        breakers: dict[str, CircuitBreaker] = getattr(self.store, "breakers", {})
        clock = time.monotonic()
        waits = [b.retry_at - clock for b in breakers.values() if b.state == "open"]
        return max([1.0, *waits])

    def forget(self, buckets: list[SharedBucket]) -> None:
        """After fork: hold no token of the parent's and start afresh on first use."""
        self._pid = 0
        self._lock = threading.Lock()
        self._beat_at = self.watched_at = -float("inf")
        self.watched = None
        self.latency.renew_lock()
        self._tracked.clear()
        self._refresh.clear()
        self._gives.clear()
        self.held.clear()  # the parent's slots are the parent's to release
        for bucket in buckets:
            for _, entry in bucket.policy.table.items():
                entry.account.expire()
                entry.debt = 0
                entry.calling = threading.Lock()

    # -- store-call arguments and answers, one copy for both twins ------------------

    @staticmethod
    def take_args(bucket: SharedBucket, want: int, minimum: int) -> dict[str, Any]:
        least = bucket.cost if minimum < 0 else minimum
        if bucket.windowed:
            return {"want": want, "limit": bucket.limit,
                    "window_seconds": bucket.window_seconds, "minimum": least}  # fmt: skip
        # A leased key books tokens due within the lease lifetime when the bucket is
        # empty (reserve mode), so a saturated key costs one call per batch.
        reserve = minimum < 0 and not bucket.strict()
        return {
            "want": want, "limit": bucket.limit, "period_seconds": bucket.window_seconds,
            "burst": bucket.burst, "minimum": least,
            "mode": TakeMode.RESERVE if reserve else TakeMode.NORMAL,
            "horizon_seconds": bucket.lifetime if reserve else 0.0,
            "reserve_want": bucket.reserve_want() if reserve else None,
        }  # fmt: skip

    @staticmethod
    def answer(bucket: SharedBucket, entry: LeaseEntry, r: TakeResult | WindowResult) -> TakeAnswer:
        if isinstance(r, WindowResult):
            entry.window = r.window
            left = max(0.0, r.window_end - r.server_time)
            # A window lease ends with its window: tokens of the next are not ours.
            return r.granted, r.wait_seconds, 0.0, left, min(bucket.lifetime, left)
        reset = (bucket.burst - r.remaining) / bucket.rate_per_second
        return r.granted, r.wait_seconds, float(r.remaining), reset, bucket.lifetime

    @staticmethod
    def debit_args(bucket: SharedBucket, debt: int) -> dict[str, Any]:
        if bucket.windowed:  # counts what still fits in the window
            return {"want": debt, "limit": bucket.limit,
                    "window_seconds": bucket.window_seconds, "minimum": 0}  # fmt: skip
        # outage debt: clamped at one burst by the script
        return {"want": debt, "limit": bucket.limit, "period_seconds": bucket.window_seconds,
                "burst": bucket.burst, "minimum": 0, "mode": TakeMode.FORCE}  # fmt: skip

    @staticmethod
    def give_args(bucket: SharedBucket, entry: LeaseEntry, tokens: int) -> dict[str, Any]:
        if bucket.windowed:
            return {"n": tokens, "window_seconds": bucket.window_seconds,
                    "window": int(entry.window)}  # fmt: skip
        return {"n": tokens, "limit": bucket.limit, "period_seconds": bucket.window_seconds}

    def expired(self, now: float) -> list[tuple[SharedBucket, LeaseEntry, int]]:
        """Tracked leases: queue expired leftovers; return entries with outage debt."""
        debts = []
        for slot, (bucket, _, entry) in list(self._tracked.items()):
            with bucket.policy.lock:
                leftover = entry.account.leftover(now)
                if leftover:
                    entry.account.expire()
                debt = entry.debt
            if leftover:
                self.give_later(bucket, entry, leftover)
            if debt and entry.store_key:
                debts.append((bucket, entry, debt))
            elif debt:  # never reached the store: nothing shared to debit
                with bucket.policy.lock:
                    entry.debt -= debt
            elif entry.account.tokens == 0:
                self._tracked.pop(slot, None)
        return debts

    def take_gives(self) -> list[tuple[SharedBucket, LeaseEntry, int]]:
        with self._lock:
            gives, self._gives = self._gives, []
        return [g for g in gives if g[1].store_key]

    def take_refreshes(self) -> list[_Tracked]:
        refresh, self._refresh = self._refresh, {}
        return list(refresh.values())

    def leftovers(self) -> None:
        """On close: every lease goes back."""
        for bucket, _, entry in list(self._tracked.values()):
            with bucket.policy.lock:
                leftover = entry.account.expire()
            if leftover:
                self.give_later(bucket, entry, leftover)
