"""``AsyncMemoryStore``: ``MemoryStore`` behind the async interface.

The operations are short and never block on I/O, so they run inline on the loop.
"""

from __future__ import annotations

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
from ratemw.store.memory import MemoryStore
from ratemw.types import Clock

__all__ = ["AsyncMemoryStore"]


class AsyncMemoryStore:
    """In-process store; see :class:`~ratemw.store.base.AsyncStore`."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.sync = MemoryStore(clock=clock)

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
    ) -> TakeResult:
        return self.sync.take(
            key,
            want,
            limit=limit,
            period_seconds=period_seconds,
            burst=burst,
            minimum=minimum,
            mode=mode,
            horizon_seconds=horizon_seconds,
            reserve_want=reserve_want,
        )

    async def take_many(self, calls: Sequence[TakeCall]) -> list[TakeResult | StoreError]:
        return self.sync.take_many(calls)

    async def give(self, key: str, n: int, *, limit: int, period_seconds: float) -> int:
        return self.sync.give(key, n, limit=limit, period_seconds=period_seconds)

    async def window_take(
        self, key: str, want: int, *, limit: int, window_seconds: float, minimum: int | None = None
    ) -> WindowResult:
        return self.sync.window_take(
            key, want, limit=limit, window_seconds=window_seconds, minimum=minimum
        )

    async def window_give(self, key: str, n: int, *, window_seconds: float, window: int) -> int:
        return self.sync.window_give(key, n, window_seconds=window_seconds, window=window)

    async def slot_acquire(
        self, key: str, slot_id: str, *, limit: int, ttl_seconds: float
    ) -> SlotResult:
        return self.sync.slot_acquire(key, slot_id, limit=limit, ttl_seconds=ttl_seconds)

    async def slot_renew(self, key: str, slot_id: str, *, ttl_seconds: float) -> bool:
        return self.sync.slot_renew(key, slot_id, ttl_seconds=ttl_seconds)

    async def slot_release(self, key: str, slot_id: str) -> bool:
        return self.sync.slot_release(key, slot_id)

    async def heartbeat(
        self, key: str, process_id: str, *, liveness_seconds: float
    ) -> HeartbeatResult:
        return self.sync.heartbeat(key, process_id, liveness_seconds=liveness_seconds)

    async def ping(self) -> bool:
        return True

    async def aclose(self) -> None:
        self.sync.close()
