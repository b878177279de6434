"""The process side of global limits: store calls, process registry, reconcile loop.

One :class:`SharedEngine` per :class:`~ratemw.Limiter`. It starts nothing at
construction: the first store call (after a fork too) registers the process with
a heartbeat and starts the reconcile thread, which every half lease lifetime
(with jitter) sends the heartbeat when one is due (every other pass; it also reads the
operations' version counter, docs/global.md), returns leftovers of expired leases (a
give is never retried: a duplicate would over-credit), debits what was admitted while
the store was unreachable, and refreshes busy keys' leases ahead of need.
``leases/engine_aio.py`` is the asyncio twin; keep the two parallel.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from typing import Any

from ratemw.errors import StoreError
from ratemw.leases.account import LeaseEntry, TakeAnswer
from ratemw.leases.bucket import SharedBucket
from ratemw.leases.engine_base import EngineBase

__all__ = ["SharedEngine"]

log = logging.getLogger("ratemw.leases.engine")
# Our own generator: the global one belongs to the application (and to its tests).
_JITTER = random.Random()


class SharedEngine(EngineBase):
    """Talks to the store for every shared policy of one limiter."""

    _thread: threading.Thread | None = None
    _stop = threading.Event()

    def _ensure_started(self) -> None:
        if self._pid == os.getpid():
            return
        with self._lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._member = f"{uuid.uuid4().hex[:12]}:{self._pid}"
            self.heartbeat_due(time.monotonic())
            self._stop = threading.Event()
            self._heartbeat()
            self._thread = threading.Thread(target=self._run, name="ratemw-reconcile", daemon=True)
            self._thread.start()

    def after_fork(self, buckets: list[SharedBucket]) -> None:
        self._thread = None
        self.forget(buckets)

    def close(self) -> None:
        """Stop the loop, give back every leftover, close the store."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        if self._pid == os.getpid():
            self.leftovers()
            self._settle_gives()
        self.store.close()

    def call_take(
        self, bucket: SharedBucket, entry: LeaseEntry, want: int, now: float, minimum: int = -1
    ) -> TakeAnswer:
        """One store call for ``want`` tokens, at least ``minimum`` (default: the cost)."""
        self._ensure_started()
        self.round_trips += 1
        self.lease_calls += 1
        args = self.take_args(bucket, want, minimum)
        try:
            if bucket.windowed:
                result = self.store.window_take(entry.store_key, **args)
            else:
                result = self.store.take(entry.store_key, **args)
        except StoreError:
            self.degraded = True
            raise
        self.degraded = False
        return self.answer(bucket, entry, result)

    def slot_acquire(self, key: str, slot_id: str, **args: Any) -> Any:
        self._ensure_started()
        self.round_trips += 1
        return self.store.slot_acquire(key, slot_id, **args)

    def release_slot(self, slot: Any) -> None:
        """Give a slot back now; if the store is unreachable it expires by itself."""
        self.held.pop(slot.slot_id, None)
        try:
            self.round_trips += 1
            self.store.slot_release(slot.key, slot.slot_id)
        except StoreError:
            pass

    def _renew(self, now: float) -> None:
        for slot in self.due_renewals(now, self.slot_ttl):
            try:
                self.round_trips += 1
                alive = self.store.slot_renew(slot.key, slot.slot_id, ttl_seconds=self.slot_ttl)
            except StoreError:
                continue
            if alive and slot.slot_id in self.held:
                self.held[slot.slot_id] = (slot, now)
            else:  # reaped: renewal never resurrects a slot
                self.held.pop(slot.slot_id, None)

    # -- the reconcile loop ----------------------------------------------------------

    def _run(self) -> None:
        pid, stop = self._pid, self._stop
        while not stop.wait(self.interval * _JITTER.uniform(0.8, 1.2)):
            if os.getpid() != pid:
                return
            try:
                self.reconcile(time.monotonic())
            except Exception:  # the loop must outlive any bug in one pass
                log.exception("ratemw reconcile pass failed")

    def reconcile(self, now: float) -> None:
        """One pass: heartbeat (when due), expired leases, outage debits, gives, refreshes."""
        if self.heartbeat_due(now):
            self._heartbeat()
        for bucket, entry, debt in self.expired(now):
            try:
                self.round_trips += 1
                if bucket.windowed:
                    self.store.window_take(entry.store_key, **self.debit_args(bucket, debt))
                else:
                    self.store.take(entry.store_key, **self.debit_args(bucket, debt))
            except StoreError:
                continue  # still unreachable: debit on a later pass
            with bucket.policy.lock:
                entry.debt -= debt
            self.debited += debt
            self.degraded = False
        self._settle_gives()
        self._renew(now)
        for bucket, key, entry in self.take_refreshes():
            self._prefetch(bucket, key, entry, now)

    def _heartbeat(self) -> None:
        try:
            self.round_trips += 1
            seen = self.store.heartbeat(self.keys.procs(), self._member, **self.heartbeat_args())
        except StoreError:
            self.degraded = True
            return
        self.heard(seen.processes, seen.watched)

    def _settle_gives(self) -> None:
        for bucket, entry, tokens in self.take_gives():
            try:
                self.round_trips += 1
                if bucket.windowed:
                    self.store.window_give(entry.store_key, **self.give_args(bucket, entry, tokens))
                else:
                    self.store.give(entry.store_key, **self.give_args(bucket, entry, tokens))
            except StoreError:
                pass  # never retried: a duplicate give would over-credit

    def _prefetch(self, bucket: SharedBucket, key: object, entry: LeaseEntry, now: float) -> None:
        if not entry.calling.acquire(blocking=False):
            return  # a request is asking right now
        try:
            want = bucket.prefetch_want(entry, now)
            if want:
                try:
                    answer = self.call_take(bucket, entry, want, now, minimum=1)
                except StoreError:
                    return
                bucket.absorb(key, entry, answer, now)
        finally:
            entry.calling.release()
