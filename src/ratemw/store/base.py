"""Store protocols and result types (LEASES.md §5).

A store keeps the shared state behind leases: GCRA buckets, sliding windows,
concurrency slots and the process registry. Times in results are seconds; ``server_time``
is the store's clock (epoch seconds for Redis), which callers use only to measure skew.
Every failure leaves a store as :class:`~ratemw.errors.StoreError`.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from ratemw.errors import StoreError

__all__ = [
    "AsyncStore",
    "HeartbeatResult",
    "SlotResult",
    "Store",
    "StoreUnavailable",
    "TakeCall",
    "TakeMode",
    "TakeResult",
    "WindowResult",
]


class StoreUnavailable(StoreError):
    """The circuit breaker is open: the call was refused without any I/O."""


class TakeMode(enum.IntEnum):
    """How :meth:`Store.take` treats an empty bucket."""

    NORMAL = 0  #: grant what is available now, else deny
    RESERVE = 1  #: book tokens falling due within the horizon; the caller paces them
    FORCE = 2  #: debit regardless (outage debt), at most one burst into debt


@dataclass(frozen=True, slots=True)
class TakeCall:
    """One GCRA take: ``want`` tokens from a bucket of ``limit`` per ``period_seconds``.

    ``burst`` defaults to ``limit``; ``minimum`` (default ``want``) is the smallest
    partial grant accepted; ``horizon_seconds`` bounds a reservation (``T_L``).
    """

    key: str
    want: int
    limit: int
    period_seconds: float
    burst: int | None = None
    minimum: int | None = None
    mode: TakeMode = TakeMode.NORMAL
    horizon_seconds: float = 0.0
    reserve_want: int | None = None  #: a reservation's size (default ``want``)


@dataclass(frozen=True, slots=True)
class TakeResult:
    """Tokens granted (0 = denied) and how long to wait: until ``minimum`` tokens exist
    when denied (``inf``: never), until the last booked token is due for a reservation."""

    granted: int
    wait_seconds: float
    server_time: float
    remaining: int = 0


@dataclass(frozen=True, slots=True)
class WindowResult:
    """A sliding-window take; the grant is valid until ``window_end`` (server time).

    Pass ``window`` to ``window_give`` to give tokens back within the same window."""

    granted: int
    wait_seconds: float
    server_time: float
    window: int
    window_end: float


@dataclass(frozen=True, slots=True)
class SlotResult:
    """A slot acquisition; ``held`` counts slots in use after the call."""

    acquired: bool
    held: int
    wait_seconds: float
    server_time: float


@dataclass(frozen=True, slots=True)
class HeartbeatResult:
    """``processes`` is ``P``, the live processes in the registry; ``watched`` the value
    of the counter the call was asked to ``watch`` (None when it was not)."""

    processes: int
    server_time: float
    watched: int | None = None


class Store(Protocol):
    """The synchronous store interface (``RedisStore``, ``MemoryStore``)."""

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
    ) -> TakeResult: ...

    def take_many(self, calls: Sequence[TakeCall]) -> list[TakeResult | StoreError]: ...

    def give(self, key: str, n: int, *, limit: int, period_seconds: float) -> int: ...

    def window_take(
        self, key: str, want: int, *, limit: int, window_seconds: float, minimum: int | None = None
    ) -> WindowResult: ...

    def window_give(self, key: str, n: int, *, window_seconds: float, window: int) -> int: ...

    def slot_acquire(
        self, key: str, slot_id: str, *, limit: int, ttl_seconds: float
    ) -> SlotResult: ...

    def slot_renew(self, key: str, slot_id: str, *, ttl_seconds: float) -> bool: ...

    def slot_release(self, key: str, slot_id: str) -> bool: ...

    def heartbeat(
        self, key: str, process_id: str, *, liveness_seconds: float
    ) -> HeartbeatResult: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


class AsyncStore(Protocol):
    """The asyncio twin of :class:`Store`: same methods, awaited; ``aclose()``."""

    async def take(
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
    ) -> TakeResult: ...

    async def take_many(self, calls: Sequence[TakeCall]) -> list[TakeResult | StoreError]: ...

    async def give(self, key: str, n: int, *, limit: int, period_seconds: float) -> int: ...

    async def window_take(
        self, key: str, want: int, *, limit: int, window_seconds: float, minimum: int | None = None
    ) -> WindowResult: ...

    async def window_give(self, key: str, n: int, *, window_seconds: float, window: int) -> int: ...

    async def slot_acquire(
        self, key: str, slot_id: str, *, limit: int, ttl_seconds: float
    ) -> SlotResult: ...

    async def slot_renew(self, key: str, slot_id: str, *, ttl_seconds: float) -> bool: ...

    async def slot_release(self, key: str, slot_id: str) -> bool: ...

    async def heartbeat(
        self, key: str, process_id: str, *, liveness_seconds: float
    ) -> HeartbeatResult: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...
