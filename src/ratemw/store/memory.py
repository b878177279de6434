"""``MemoryStore``: the store operations in-process, for tests and single-process apps.

Mirrors the Lua scripts in ``resources/lua`` (same arithmetic, seconds instead of µs)
over the injected clock's ``monotonic()``; ``server_time`` is that clock. Thread-safe.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence

from ratemw.errors import StoreError
from ratemw.store.base import (
    HeartbeatResult,
    SlotResult,
    TakeCall,
    TakeMode,
    TakeResult,
    WindowResult,
)
from ratemw.types import Clock

__all__ = ["MemoryStore"]

_EPS = 1e-9
_SWEEP_EVERY = 1024


class MemoryStore:
    """In-process store; see :class:`~ratemw.store.base.Store`. Never raises StoreError."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self._now = clock.monotonic if clock is not None else time.monotonic
        self._lock = threading.Lock()
        self._tat: dict[str, float] = {}
        # window index, count, previous count, forget-after time (two windows, like the TTL)
        self._windows: dict[str, tuple[int, int, int, float]] = {}
        self._slots: dict[str, dict[str, float]] = {}
        self._procs: dict[str, dict[str, float]] = {}
        self._ops = 0

    def _tick(self) -> float:
        now = self._now()
        self._ops += 1
        if self._ops % _SWEEP_EVERY == 0:  # forget full buckets, as Redis TTLs would
            self._tat = {k: v for k, v in self._tat.items() if v > now}
            self._slots = {k: v for k, v in self._slots.items() if v and max(v.values()) > now}
            self._windows = {k: v for k, v in self._windows.items() if v[3] > now}
        return now

    def take(
        self,
        key: str,
        want: int,
        *,
        limit: int,
        period_seconds: float,
        burst: int | None = None,
        minimum: int | None = None,
        mode: TakeMode = TakeMode.NORMAL,
        horizon_seconds: float = 0.0,
        reserve_want: int | None = None,
    ) -> TakeResult:
        """Take up to ``want`` tokens (GCRA); see ``take.lua``."""
        booked = want if reserve_want is None else reserve_want
        interval = period_seconds / limit
        tolerance = (limit if burst is None else burst) * interval
        floor_ = want if minimum is None else minimum
        with self._lock:
            now = self._tick()
            tat = max(self._tat.get(key, now), now)

            def fits(extra: float) -> int:
                return max(math.floor((now + extra + tolerance - tat) / interval + _EPS), 0)

            granted, wait = 0, 0.0
            if mode == TakeMode.FORCE:
                granted = want
                tat = min(tat + want * interval, max(tat, now + 2 * tolerance))
            elif fits(0) >= floor_:
                granted = min(want, fits(0))
                tat += granted * interval
            elif mode == TakeMode.RESERVE and min(booked, fits(horizon_seconds)) >= floor_:
                granted = min(booked, fits(horizon_seconds))
                tat += granted * interval
                wait = max(tat - tolerance - now, 0.0)
            elif floor_ * interval > tolerance * (1 + 1e-12):
                wait = math.inf
            else:
                wait = max(tat + floor_ * interval - tolerance - now, 0.0)
            if granted:
                self._tat[key] = tat
            return TakeResult(granted, wait, now, fits(0))

    def take_many(self, calls: Sequence[TakeCall]) -> list[TakeResult | StoreError]:
        """Several takes; see ``RedisStore.take_many``."""
        return [
            self.take(
                c.key,
                c.want,
                limit=c.limit,
                period_seconds=c.period_seconds,
                burst=c.burst,
                minimum=c.minimum,
                mode=c.mode,
                horizon_seconds=c.horizon_seconds,
                reserve_want=c.reserve_want,
            )
            for c in calls
        ]

    def give(self, key: str, n: int, *, limit: int, period_seconds: float) -> int:
        """Return ``n`` unused tokens, never past a full bucket; returns those credited."""
        interval = period_seconds / limit
        with self._lock:
            now = self._tick()
            stored = self._tat.get(key)
            if stored is None or stored <= now:
                return 0
            tat = max(stored - n * interval, now)
            self._tat[key] = tat
            return min(n, math.floor((stored - tat) / interval + 0.5))

    def _window(self, key: str, idx: int) -> tuple[int, int]:
        w, c, p, _ = self._windows.get(key, (idx, 0, 0, 0.0))
        if w != idx:
            p, c = (c if w == idx - 1 else 0), 0
        return c, p

    def window_take(
        self, key: str, want: int, *, limit: int, window_seconds: float, minimum: int | None = None
    ) -> WindowResult:
        """Reserve against a sliding window counter; see ``window_take.lua``."""
        floor_ = want if minimum is None else minimum
        with self._lock:
            now = self._tick()
            idx = math.floor(now / window_seconds)
            start = idx * window_seconds
            c, p = self._window(key, idx)
            frac = (now - start) / window_seconds
            available = max(math.floor(limit - p * (1 - frac) - c + _EPS), 0)
            granted, wait = 0, 0.0
            if available >= floor_:
                granted = min(want, available)
                self._windows[key] = (idx, c + granted, p, now + 2 * window_seconds)
            elif floor_ > limit:
                wait = math.inf
            elif c + floor_ <= limit and p > 0:
                wait = start + (1 - (limit - c - floor_) / p) * window_seconds - now
            else:
                f = max(1 - (limit - floor_) / c, 0.0) if c > 0 else 0.0
                wait = start + (1 + f) * window_seconds - now
            return WindowResult(granted, max(wait, 0.0), now, idx, start + window_seconds)

    def window_give(self, key: str, n: int, *, window_seconds: float, window: int) -> int:
        """Give back tokens taken in ``window``; 0 once it has ended."""
        with self._lock:
            now = self._tick()
            w, c, p, expires = self._windows.get(key, (-1, 0, 0, 0.0))
            if math.floor(now / window_seconds) != window or w != window:
                return 0
            returned = min(n, c)
            self._windows[key] = (w, c - returned, p, expires)
            return returned

    def _live_slots(self, key: str, now: float) -> dict[str, float]:
        slots = {k: v for k, v in self._slots.get(key, {}).items() if v > now}
        self._slots[key] = slots
        return slots

    def slot_acquire(self, key: str, slot_id: str, *, limit: int, ttl_seconds: float) -> SlotResult:
        """Hold one of ``limit`` slots for ``ttl_seconds``; expired slots are dropped first."""
        with self._lock:
            now = self._tick()
            slots = self._live_slots(key, now)
            if slot_id in slots or len(slots) < limit:
                slots[slot_id] = now + ttl_seconds
                return SlotResult(True, len(slots), 0.0, now)
            wait = min(slots.values()) - now if slots else math.inf
            return SlotResult(False, len(slots), wait, now)

    def slot_renew(self, key: str, slot_id: str, *, ttl_seconds: float) -> bool:
        """Extend a held slot; False if it expired (never re-created)."""
        with self._lock:
            now = self._tick()
            slots = self._live_slots(key, now)
            if slot_id not in slots:
                return False
            slots[slot_id] = now + ttl_seconds
            return True

    def slot_release(self, key: str, slot_id: str) -> bool:
        """Release a slot; False if it was not held."""
        with self._lock:
            return self._slots.get(key, {}).pop(slot_id, None) is not None

    def heartbeat(self, key: str, process_id: str, *, liveness_seconds: float) -> HeartbeatResult:
        """Record ``process_id`` as alive; count processes heard from within the window."""
        with self._lock:
            now = self._tick()
            procs = self._procs.setdefault(key, {})
            procs[process_id] = now
            live = {k: v for k, v in procs.items() if v >= now - liveness_seconds}
            self._procs[key] = live
            return HeartbeatResult(len(live), now)

    def ping(self) -> bool:
        return True

    def close(self) -> None:
        with self._lock:
            self._tat.clear()
            self._windows.clear()
            self._slots.clear()
            self._procs.clear()
