from __future__ import annotations

import asyncio
import math
import threading
from typing import Any

from ratemw.store import AsyncMemoryStore, MemoryStore, TakeCall, TakeMode
from ratemw.testing import ManualClock

RATE: dict[str, Any] = {"limit": 10, "period_seconds": 10.0}  # one token per second, burst 10


def test_take_grants_denies_and_waits(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    assert store.take("k", 10, **RATE).granted == 10
    denied = store.take("k", 2, **RATE)
    assert denied.granted == 0
    assert math.isclose(denied.wait_seconds, 2.0)
    clock.advance(2.0)
    assert store.take("k", 2, **RATE).granted == 2


def test_partial_grant_down_to_minimum(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    store.take("k", 7, **RATE)
    assert store.take("k", 5, minimum=2, **RATE).granted == 3
    assert store.take("k", 5, minimum=1, **RATE).granted == 0
    assert math.isinf(store.take("k", 11, **RATE).wait_seconds)


def test_reserve_books_within_horizon(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    store.take("k", 10, **RATE)
    result = store.take("k", 5, minimum=1, mode=TakeMode.RESERVE, horizon_seconds=3.0, **RATE)
    assert result.granted == 3
    assert math.isclose(result.wait_seconds, 3.0)


def test_force_debt_is_clamped_at_one_burst(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    assert store.take("k", 1000, mode=TakeMode.FORCE, **RATE).granted == 1000
    assert math.isclose(store.take("k", 1, **RATE).wait_seconds, 11.0)


def test_give_never_over_credits(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    assert store.give("new", 5, **RATE) == 0
    store.take("k", 3, **RATE)
    assert store.give("k", 10, **RATE) == 3
    assert store.take("k", 10, **RATE).granted == 10
    assert store.take("k", 1, **RATE).granted == 0


def test_window_take_and_give(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    clock.set(1200.0)  # a window start
    first = store.window_take("w", 3, limit=5, window_seconds=100.0)
    assert first.granted == 3
    assert first.window_end == 1300.0
    assert store.window_take("w", 3, limit=5, window_seconds=100.0).granted == 0
    assert store.window_give("w", 2, window_seconds=100.0, window=first.window) == 2
    assert store.window_take("w", 4, limit=5, window_seconds=100.0).granted == 4
    clock.advance(150.0)  # half way through the next window: previous weighs 1/2
    assert store.window_take("w", 5, limit=5, window_seconds=100.0, minimum=1).granted == 2
    assert store.window_give("w", 2, window_seconds=100.0, window=first.window) == 0


def test_slots_expire_and_never_resurrect(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    assert store.slot_acquire("c", "a", limit=1, ttl_seconds=5).acquired
    denied = store.slot_acquire("c", "b", limit=1, ttl_seconds=5)
    assert not denied.acquired
    assert math.isclose(denied.wait_seconds, 5.0)
    assert store.slot_renew("c", "a", ttl_seconds=5)
    clock.advance(6)
    assert not store.slot_renew("c", "a", ttl_seconds=5)
    assert store.slot_acquire("c", "b", limit=1, ttl_seconds=5).acquired
    assert store.slot_release("c", "b")
    assert not store.slot_release("c", "b")


def test_heartbeat_drops_silent_processes(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    store.heartbeat("p", "1", liveness_seconds=3)
    assert store.heartbeat("p", "2", liveness_seconds=3).processes == 2
    clock.advance(4)
    assert store.heartbeat("p", "2", liveness_seconds=3).processes == 1


def test_take_many_and_threads(clock: ManualClock) -> None:
    store = MemoryStore(clock=clock)
    results = store.take_many([TakeCall("a", 1, 100, 1.0), TakeCall("b", 2, 100, 1.0)])
    assert [r.granted for r in results if not isinstance(r, Exception)] == [1, 2]
    granted = []

    def worker() -> None:
        for _ in range(100):
            granted.append(store.take("t", 1, limit=500, period_seconds=1000.0).granted)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(granted) == 500


def test_async_memory_store(clock: ManualClock) -> None:
    async def flow() -> list[int]:
        store = AsyncMemoryStore(clock=clock)
        out = [(await store.take("k", 3, limit=3, period_seconds=1)).granted]
        out.append(await store.give("k", 1, limit=3, period_seconds=1))
        out.append(int((await store.slot_acquire("c", "a", limit=1, ttl_seconds=1)).acquired))
        out.append((await store.heartbeat("p", "1", liveness_seconds=1)).processes)
        assert await store.ping()
        await store.aclose()
        return out

    assert asyncio.run(flow()) == [3, 1, 1, 1]
