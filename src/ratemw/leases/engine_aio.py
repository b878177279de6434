"""The asyncio twin of :mod:`ratemw.leases.engine`: same names, store calls awaited.

The reconcile loop is a task on the event loop that first used the store; it never
blocks the loop. Keep this file parallel to ``leases/engine.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
import uuid
from typing import Any

from ratemw.errors import StoreError
from ratemw.leases.account import LeaseEntry, TakeAnswer
from ratemw.leases.bucket import SharedBucket
from ratemw.leases.engine_base import EngineBase

__all__ = ["AsyncSharedEngine"]

log = logging.getLogger("ratemw.leases.engine")
# Our own generator: the global one belongs to the application (and to its tests).
_JITTER = random.Random()


class AsyncSharedEngine(EngineBase):
    """Talks to the async store for every shared policy of one ``AsyncLimiter``."""

    awaited = True
    _task: asyncio.Task[None] | None = None

    def __init__(self, store: Any, **options: Any) -> None:
        super().__init__(store, **options)
        self._releases: set[asyncio.Task[None]] = set()  # slot releases in flight

    _waiters: dict[int, asyncio.Event] | None = None

    async def wait_for_call(self, entry: LeaseEntry) -> bool:
        """Wait (bounded) for another task's call on ``entry``; False on time-out."""
        if self._waiters is None:
            self._waiters = {}
        event = self._waiters.setdefault(id(entry), asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), self.call_wait)
        except asyncio.TimeoutError:
            return False
        return True

    def call_done(self, entry: LeaseEntry) -> None:
        event = self._waiters.pop(id(entry), None) if self._waiters else None
        if event is not None:
            event.set()

    async def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._member = f"{uuid.uuid4().hex[:12]}:{self._pid}"
        self.heartbeat_due(time.monotonic())
        await self._heartbeat()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def after_fork(self, buckets: list[SharedBucket]) -> None:
        self._task = None
        self.forget(buckets)

    async def aclose(self) -> None:
        """Stop the loop, give back every leftover, close the store."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            # Wait for it, or a loop closed right after would destroy a pending task.
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._pid == os.getpid():
            self.leftovers()
            await self._settle_gives()
        await self.store.aclose()

    async def call_take(
        self, bucket: SharedBucket, entry: LeaseEntry, want: int, now: float, minimum: int = -1
    ) -> TakeAnswer:
        """One store call for ``want`` tokens, at least ``minimum`` (default: the cost)."""
        await self._ensure_started()
        self.round_trips += 1
        self.lease_calls += 1
        args = self.take_args(bucket, want, minimum)
        try:
            if bucket.windowed:
                result = await self.store.window_take(entry.store_key, **args)
            else:
                result = await self.store.take(entry.store_key, **args)
        except StoreError:
            self.degraded = True
            raise
        self.degraded = False
        return self.answer(bucket, entry, result)

    async def slot_acquire(self, key: str, slot_id: str, **args: Any) -> Any:
        await self._ensure_started()
        self.round_trips += 1
        return await self.store.slot_acquire(key, slot_id, **args)

    def release_slot(self, slot: Any) -> None:
        """Give a slot back soon (a task); if the store is unreachable it expires."""
        self.held.pop(slot.slot_id, None)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (interpreter shutdown): the slot expires by itself
        task = loop.create_task(self._release(slot))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, slot: Any) -> None:
        try:
            self.round_trips += 1
            await self.store.slot_release(slot.key, slot.slot_id)
        except StoreError:
            pass

    async def _renew(self, now: float) -> None:
        for slot in self.due_renewals(now, self.slot_ttl):
            try:
                self.round_trips += 1
                alive = await self.store.slot_renew(
                    slot.key, slot.slot_id, ttl_seconds=self.slot_ttl
                )
            except StoreError:
                continue
            if alive and slot.slot_id in self.held:
                self.held[slot.slot_id] = (slot, now)
            else:  # reaped: renewal never resurrects a slot
                self.held.pop(slot.slot_id, None)

    # -- the reconcile loop ----------------------------------------------------------

    async def _run(self) -> None:
        pid = self._pid
        while True:
            await asyncio.sleep(self.interval * _JITTER.uniform(0.8, 1.2))
            if os.getpid() != pid:
                return
            try:
                await self.reconcile(time.monotonic())
            except Exception:  # the loop must outlive any bug in one pass
                log.exception("ratemw reconcile pass failed")

    async def reconcile(self, now: float) -> None:
        """One pass: heartbeat (when due), expired leases, outage debits, gives, refreshes."""
        if self.heartbeat_due(now):
            await self._heartbeat()
        for bucket, entry, debt in self.expired(now):
            try:
                self.round_trips += 1
                if bucket.windowed:
                    await self.store.window_take(entry.store_key, **self.debit_args(bucket, debt))
                else:
                    await self.store.take(entry.store_key, **self.debit_args(bucket, debt))
            except StoreError:
                continue  # still unreachable: debit on a later pass
            with bucket.policy.lock:
                entry.debt -= debt
            self.debited += debt
            self.degraded = False
        await self._settle_gives()
        await self._renew(now)
        for bucket, key, entry in self.take_refreshes():
            await self._prefetch(bucket, key, entry, now)

    async def _heartbeat(self) -> None:
        try:
            self.round_trips += 1
            seen = await self.store.heartbeat(
                self.keys.procs(), self._member, **self.heartbeat_args()
            )
        except StoreError:
            self.degraded = True
            return
        self.heard(seen.processes, seen.watched)

    async def _settle_gives(self) -> None:
        for bucket, entry, tokens in self.take_gives():
            try:
                self.round_trips += 1
                if bucket.windowed:
                    await self.store.window_give(
                        entry.store_key, **self.give_args(bucket, entry, tokens)
                    )
                else:
                    await self.store.give(entry.store_key, **self.give_args(bucket, entry, tokens))
            except StoreError:
                pass  # never retried: a duplicate give would over-credit

    async def _prefetch(
        self, bucket: SharedBucket, key: object, entry: LeaseEntry, now: float
    ) -> None:
        if entry.calling.locked():
            return  # a request is asking right now
        entry.calling.acquire()
        try:
            want = bucket.prefetch_want(entry, now)
            if want:
                try:
                    answer = await self.call_take(bucket, entry, want, now, minimum=1)
                except StoreError:
                    return
                bucket.absorb(key, entry, answer, now)
        finally:
            entry.calling.release()
