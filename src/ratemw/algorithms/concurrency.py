"""Concurrency limit: at most ``limit`` requests in flight per key (LEASES.md §10).

The local, per-process part: a counter the caller guards with its lock, and a ``Slot``
per admitted request whose ``release()`` runs exactly once however often it is called.
"""

from __future__ import annotations

from collections.abc import Hashable
from contextlib import AbstractContextManager
from typing import Any

from ratemw.algorithms.tables import KeyTable

__all__ = ["RETRY_SECONDS", "ConcurrencyLimit", "ConcurrencyState", "LocalSlots", "Slot"]

#: a concurrency rejection's Retry-After: a slot is commonly free again by then
RETRY_SECONDS = 1.0


class ConcurrencyState:
    """Number of requests in flight."""

    __slots__ = ("inflight",)

    def __init__(self) -> None:
        self.inflight: int = 0

    def __repr__(self) -> str:
        return f"ConcurrencyState(inflight={self.inflight!r})"


class ConcurrencyLimit:
    """Admit while fewer than ``limit`` requests are in flight.

    Raises ``ValueError`` for a limit below 1.
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit!r}")
        self.limit = limit

    def __repr__(self) -> str:
        return f"ConcurrencyLimit(limit={self.limit!r})"

    def new_state(self, now: float = 0.0) -> ConcurrencyState:
        """Return a state with nothing in flight (``now`` is accepted for symmetry)."""
        return ConcurrencyState()

    def acquire(self, state: ConcurrencyState) -> bool:
        """Count one more request in flight if below the limit; False otherwise."""
        if state.inflight < self.limit:
            state.inflight += 1
            return True
        return False

    def remaining(self, state: ConcurrencyState) -> int:
        """Requests that could still start now."""
        left = self.limit - state.inflight
        return left if left > 0 else 0

    def at_rest(self, state: ConcurrencyState, now: float = 0.0) -> bool:
        """True when nothing is in flight, so the state may be evicted."""
        return state.inflight <= 0


class Slot:
    """One acquired unit of ``state``; ``release()`` gives it back exactly once.

    Middleware may release from the final send, a ``finally`` and a disconnect
    handler, possibly on different threads. ``lock``, if given, is the lock that guards
    ``state`` for ``acquire`` and is held around the decrement.
    """

    __slots__ = ("_lock", "_token", "state")

    def __init__(
        self, state: ConcurrencyState, lock: AbstractContextManager[Any] | None = None
    ) -> None:
        self.state = state
        self._lock = lock
        # list.pop() is one atomic operation (under the GIL, and under the per-object
        # lock of free-threaded builds), so exactly one caller gets the token: a
        # check-then-set boolean would let two racing releases both decrement.
        self._token: list[bool] = [True]

    @property
    def released(self) -> bool:
        """True once ``release()`` has run."""
        return not self._token

    def release(self) -> bool:
        """Decrement the in-flight count the first time; return whether this call did."""
        try:
            self._token.pop()
        except IndexError:
            return False
        if self._lock is None:
            self.state.inflight -= 1
        else:
            with self._lock:
                self.state.inflight -= 1
        return True

    def __repr__(self) -> str:
        return f"Slot(state={self.state!r}, released={self.released!r})"


class LocalSlots:
    """In-flight requests per key in this process."""

    shared = None

    def __init__(self, limit: ConcurrencyLimit, table: KeyTable[Any]) -> None:
        self.limit = limit
        self.table = table

    def acquire(self, key: Hashable, now: float) -> tuple[Slot | None, float]:
        table = self.table
        with table.lock:
            state = table.get(key, now)
            acquired = self.limit.acquire(state)
        return (Slot(state, table.lock), 0.0) if acquired else (None, RETRY_SECONDS)
