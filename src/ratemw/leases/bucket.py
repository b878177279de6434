"""Global limits: quota leased from a shared store and spent locally (LEASES.md).

A :class:`SharedBucket` stands in for a rate policy's local algorithm when the
limiter has a store. Per (policy, identity) it keeps a :class:`LeaseEntry`: tokens
the store granted to this process with a deadline, the key's recent admit rate,
a deny cache, and what was admitted while the store was unreachable. Decisions
spend leased tokens locally; only an empty or expired lease costs a store call,
made outside every key-table lock, one per key per process at a time.

Modes (LEASES.md §3): *strict* (one store call per decision) when the lease cap
``floor(f·B/P)`` is 1 or less or the rule says ``lease: {size: 1}``; *leased*
otherwise. While the store is unreachable each key spends what it holds, then
follows the rule's ``on_store_error``: ``local`` (a bucket of ``R/P_exp`` and
``max(1, B/P_exp)``), ``open`` (admit) or ``closed`` (503); whatever it admitted
is debited from the store when it returns.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol

from ratemw.algorithms.base import TIME_SLACK_SECONDS
from ratemw.algorithms.token_bucket import TokenBucket
from ratemw.errors import StoreClosed, StoreError
from ratemw.leases.account import LeaseEntry, TakeAnswer

if TYPE_CHECKING:
    from ratemw.rules.compile import Policy

__all__ = ["LeaseEngine", "SharedBucket", "StoreClosed"]


STRAND_FRACTION = 0.2  # f: at most f·B tokens of a key sit in leases


class LeaseEngine(Protocol):
    """What a shared bucket asks of the engine that leases for it
    (``ratemw.leases.engine.SharedEngine``; the asyncio twin's ``call_take`` is awaited):
    typed here, so the buckets never import the engine that imports them."""

    outage_admits: int

    @property
    def processes(self) -> int: ...
    @property
    def call_wait(self) -> float: ...

    def store_key(self, bucket: SharedBucket, key: Hashable) -> str: ...
    def give_later(self, bucket: SharedBucket, entry: LeaseEntry, tokens: int) -> None: ...
    def track(self, bucket: SharedBucket, key: Hashable, entry: LeaseEntry) -> None: ...
    def wants_refresh(self, bucket: SharedBucket, key: Hashable, entry: LeaseEntry) -> None: ...
    def local_share(self, bucket: SharedBucket) -> TokenBucket: ...
    def retry_after(self, now: float) -> float: ...
    def call_take(
        self, bucket: SharedBucket, entry: LeaseEntry, want: int, now: float, minimum: int = -1
    ) -> TakeAnswer: ...


class SharedBucket:
    """The global face of one rate policy; quacks like a rate algorithm for headers.

    ``acquire`` and ``refund`` replace the local ``take``/``give``; ``remaining``
    and ``reset_after`` report the store's view as of the key's last call plus
    what this process still holds.
    """

    def __init__(self, policy: Policy, engine: LeaseEngine) -> None:
        rule = policy.rule.rule
        rate = policy.rate
        self.policy = policy
        self.engine = engine
        self.limit = rate.count
        self.window_seconds = rate.period_seconds
        self.rate_per_second = rate.per_second
        self.burst = rule.burst if rule.burst is not None else rate.count
        self.cost = rule.cost
        self.windowed = rule.algorithm in ("fixed_window", "sliding_window")
        self.lease_size = rule.lease.size  # None = auto
        # Leases live five reconcile intervals (1 s by default), never longer than
        # the time the bucket takes to refill (LEASES.md §7: keep T_L <= B/R).
        self.lifetime = min(5 * rule.lease.sync_interval, self.burst / self.rate_per_second)
        self.store_id = policy.store_id
        self.on_store_error = rule.on_store_error

    # -- sizing (pure) ------------------------------------------------------

    def cap(self) -> int:
        """N_cap = floor(f·B / P): the most one process may hold."""
        return int(STRAND_FRACTION * self.burst // max(1, self.engine.processes))

    def strict(self) -> bool:
        return self.lease_size == 1 or self.cap() <= self.cost

    def want(self, entry: LeaseEntry, now: float) -> int:
        """Tokens to ask for: about 1.5 lease lifetimes of the recent rate, capped."""
        if self.strict():
            return self.cost
        cap = self.cap() if self.lease_size is None else min(self.cap(), self.lease_size)
        guess = math.ceil(entry.estimate(now) * self.lifetime * 1.5)
        held = entry.account.tokens
        return max(self.cost, min(cap - held, guess))

    def reserve_want(self) -> int:
        """A reservation's size: this process's share of one lease lifetime of the rate.

        Reserved tokens fall due one interval apart and are spent paced, so they add
        no overshoot; more than ``N_cap`` of them keeps a saturated key at about
        ``P / T_L`` calls a second (docs/global.md, "Departures").
        """
        share = math.ceil(self.rate_per_second * self.lifetime / max(1, self.engine.processes))
        return max(self.cap(), share, self.cost)

    # -- the algorithm face, for Decision headers ------------------------------

    def new_state(self, now: float) -> LeaseEntry:
        return LeaseEntry(now)

    def at_rest(self, entry: LeaseEntry, now: float) -> bool:
        return (
            entry.account.tokens == 0
            and entry.debt == 0
            and now >= entry.denied_until
            and now >= entry.reset_at
            and not entry.calling.locked()
        )

    def remaining(self, entry: LeaseEntry, now: float) -> int:
        # Reserved tokens that are not yet due are not the client's to spend now.
        held = entry.account.tokens if now >= entry.account.due else 0
        return max(0, int(entry.remaining) + held)

    def reset_after(self, entry: LeaseEntry, now: float) -> float:
        return max(0.0, entry.reset_at - now)

    # local take/give are never used for a shared policy: acquire/refund are.
    def take(self, entry: LeaseEntry, now: float, cost: int) -> float:  # pragma: no cover
        raise NotImplementedError("shared policies decide through acquire()")

    def give(self, entry: LeaseEntry, now: float, cost: int) -> None:
        self.refund(entry, now)

    def refund(self, entry: LeaseEntry, now: float) -> None:
        """A later rule rejected: the tokens go back into this process's lease."""
        with self.policy.lock:
            if entry.account.deadline > now:
                entry.account.refund(self.cost)
            elif entry.debt >= self.cost:
                entry.debt -= self.cost

    # -- the decision: begin (local), prepare + finish around one store call --------

    def begin(self, key: Any, now: float) -> tuple[LeaseEntry, float | None]:
        """Try to decide locally: the deny cache, then the lease. ``None``: ask the store."""
        cost = self.cost
        with self.policy.lock:
            entry = self.policy.table.get(key, now)
            if now < entry.denied_until:
                return entry, entry.retry_at - now + TIME_SLACK_SECONDS
            account = entry.account
            if account.spend(cost, now):
                entry.note_admit(cost, now)
                if account.needs_refresh(now):
                    self.engine.wants_refresh(self, key, entry)
                return entry, 0.0
            paced = account.due_in(cost, now)
            if paced:
                # This process's reserved share is spent until its next token is due.
                return entry, paced + TIME_SLACK_SECONDS
        return entry, None

    def prepare(self, key: Any, entry: LeaseEntry, now: float) -> int:
        """Under the key's call guard: 0 if another caller refilled the lease (and
        this request was admitted from it), -1 if another caller was just denied (the
        deny cache answers), else the tokens to ask the store for."""
        with self.policy.lock:
            if entry.account.spend(self.cost, now):
                entry.note_admit(self.cost, now)
                return 0
            if now < entry.denied_until:
                # The caller before us was denied: the store would deny us too.
                return -1
            want = self.want(entry, now)
            leftover = entry.account.expire()
        if leftover:
            self.engine.give_later(self, entry, leftover)
        if not entry.store_key:
            entry.store_key = self.engine.store_key(self, key)
        return want

    def finish(self, key: Any, entry: LeaseEntry, result: TakeAnswer, now: float) -> float:
        """Apply the store's answer: 0.0 when admitted, else the wait."""
        granted, wait = result[0], result[1]
        cost = self.cost
        if granted >= cost:
            self.absorb(key, entry, result, now)
            with self.policy.lock:
                if entry.account.spend(cost, now):
                    entry.note_admit(cost, now)
                    return 0.0
                # A reservation whose first token is not due yet.
                return entry.account.due_in(cost, now) + TIME_SLACK_SECONDS
        with self.policy.lock:
            entry.remaining = result[2]
            entry.reset_at = now + result[3]
            # Deny cache: answer this key locally until it could pass (LEASES.md §6), a
            # lease lifetime at most; its answers keep the store's wait (retry_at).
            entry.denied_until = now + min(wait, self.lifetime)
            entry.retry_at = now + wait
        return wait + TIME_SLACK_SECONDS

    def acquire(self, key: Any, now: float) -> tuple[LeaseEntry, float]:
        """Spend ``cost`` for ``key``: 0.0 when admitted, else the wait in seconds.

        Raises :class:`StoreClosed` when the store is unreachable and the rule
        says ``closed``. Never raises a store error; no store I/O under a lock
        other than the key's own call guard.
        """
        entry, wait = self.begin(key, now)
        if wait is not None:
            return entry, wait
        if not entry.calling.acquire(timeout=self.engine.call_wait):
            return entry, self.fallback(entry, key, now)
        try:
            want = self.prepare(key, entry, now)
            if want <= 0:
                return entry, self._settled(entry, want, now)
            try:
                result = self.engine.call_take(self, entry, want, now)
            except StoreError:
                return entry, self.fallback(entry, key, now)
            return entry, self.finish(key, entry, result, now)
        finally:
            entry.calling.release()

    async def aacquire(self, key: Any, now: float) -> tuple[LeaseEntry, float]:
        """The asyncio twin of :meth:`acquire` (the engine is an ``AsyncSharedEngine``)."""
        entry, wait = self.begin(key, now)
        if wait is not None:
            return entry, wait
        engine: Any = self.engine
        while entry.calling.locked():  # another task is asking: wait for its answer
            if not await engine.wait_for_call(entry):
                return entry, self.fallback(entry, key, now)
            entry, wait = self.begin(key, now)
            if wait is not None:
                return entry, wait
        entry.calling.acquire()
        try:
            want = self.prepare(key, entry, now)
            if want <= 0:
                return entry, self._settled(entry, want, now)
            try:
                result = await engine.call_take(self, entry, want, now)
            except StoreError:
                return entry, self.fallback(entry, key, now)
            return entry, self.finish(key, entry, result, now)
        finally:
            entry.calling.release()
            engine.call_done(entry)

    @staticmethod
    def _settled(entry: LeaseEntry, want: int, now: float) -> float:
        """The answer when :meth:`prepare` needed no store call."""
        return 0.0 if want == 0 else entry.retry_at - now + TIME_SLACK_SECONDS

    def prefetch_want(self, entry: LeaseEntry, now: float) -> int:
        """Tokens to fetch ahead of need for a busy key (0: none needed)."""
        with self.policy.lock:
            account = entry.account
            if self.strict() or not entry.store_key or now >= account.deadline:
                return 0  # an expired lease is renewed by the next request, after its give
            return self.want(entry, now) if account.needs_refresh(now) else 0

    def absorb(self, key: Any, entry: LeaseEntry, result: TakeAnswer, now: float) -> None:
        """Add a prefetched grant to the key's lease."""
        granted, wait, remaining, reset_after, life = result
        with self.policy.lock:
            entry.remaining = remaining
            entry.reset_at = now + reset_after
            if granted and wait > 0:
                pace = 1.0 / self.rate_per_second
                first = now + wait - (granted - 1) * pace
                entry.account.grant(granted, now + wait + life, now, first, pace)
            elif granted:
                entry.account.grant(granted, now + life, now)
        if granted:
            self.engine.track(self, key, entry)

    def fallback(self, entry: LeaseEntry, key: Any, now: float) -> float:
        """The store cannot answer: the rule's ``on_store_error`` decides."""
        policy = self.policy
        cost = self.cost
        mode = self.on_store_error
        if mode == "closed":
            raise StoreClosed(self.engine.retry_after(now))
        with policy.lock:
            if mode == "open":
                entry.debt += cost
                self.engine.outage_admits += cost
                self.engine.track(self, key, entry)
                return 0.0
            share = self.engine.local_share(self)
            if entry.share is None:
                entry.share = share.new_state(now)
            wait = share.take(entry.share, now, cost)
            if not wait:
                entry.debt += cost
                self.engine.outage_admits += cost
                self.engine.track(self, key, entry)
            return wait
