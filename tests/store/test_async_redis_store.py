from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import redis

from ratemw.errors import StoreError
from ratemw.store import (
    AsyncMemoryStore,
    AsyncRedisStore,
    KeyBuilder,
    MemoryStore,
    RedisStore,
    StoreUnavailable,
    TakeCall,
)
from ratemw.store.server import RedisServer

pytestmark = pytest.mark.redis

T = TypeVar("T")
RATE: dict[str, Any] = {"limit": 10, "period_seconds": 10.0}
KEYS = KeyBuilder("test", hash_key="test")


def key(name: str, kind: str = "g") -> str:
    return KEYS.key("policy", name, kind)


def run(flow: Callable[[AsyncRedisStore], Awaitable[T]], url: str) -> T:
    async def main() -> T:
        store = AsyncRedisStore(url)
        try:
            return await flow(store)
        finally:
            await store.aclose()

    return asyncio.run(main())


@pytest.fixture(params=[pytest.param("single"), pytest.param("cluster", marks=pytest.mark.cluster)])
def url(request: pytest.FixtureRequest) -> str:
    name = "redis_url" if request.param == "single" else "redis_cluster_url"
    value: str = request.getfixturevalue(name)
    return value


def _public(cls: type) -> set[str]:
    return {n for n in dir(cls) if not n.startswith("_")} - {"close", "aclose", "sync"}


def test_twins_expose_the_same_methods() -> None:
    assert _public(RedisStore) == _public(AsyncRedisStore)
    assert _public(MemoryStore) | {"breakers", "redis"} == _public(RedisStore)
    assert _public(AsyncMemoryStore) | {"breakers", "redis"} == _public(AsyncRedisStore)
    for name in _public(AsyncRedisStore) - {"breakers"}:
        assert inspect.iscoroutinefunction(getattr(AsyncRedisStore, name)), name
        sync_sig = inspect.signature(getattr(RedisStore, name))
        assert inspect.signature(getattr(AsyncRedisStore, name)).parameters == sync_sig.parameters


def test_take_give_window_slots_heartbeat(url: str) -> None:
    async def flow(store: AsyncRedisStore) -> None:
        assert (await store.take(key("a"), 10, **RATE)).granted == 10
        denied = await store.take(key("a"), 2, **RATE)
        assert denied.granted == 0
        assert 1.5 < denied.wait_seconds <= 2.0
        assert await store.give(key("a"), 1, limit=10, period_seconds=1000.0) in (0, 1)
        taken = await store.window_take(key("w", "w"), 3, limit=5, window_seconds=3600)
        assert taken.granted == 3
        assert (
            await store.window_give(key("w", "w"), 1, window_seconds=3600, window=taken.window) == 1
        )
        assert (await store.slot_acquire(key("c", "c"), "a", limit=1, ttl_seconds=30)).acquired
        assert not (await store.slot_acquire(key("c", "c"), "b", limit=1, ttl_seconds=30)).acquired
        assert await store.slot_renew(key("c", "c"), "a", ttl_seconds=30)
        assert await store.slot_release(key("c", "c"), "a")
        assert not await store.slot_renew(key("c", "c"), "a", ttl_seconds=30)
        assert (await store.heartbeat(KEYS.procs(), "p", liveness_seconds=5)).processes == 1
        watched = KEYS.procs().replace(":procs", ":opsv")
        seen = await store.heartbeat(KEYS.procs(), "p", liveness_seconds=5, watch=watched)
        assert (seen.processes, seen.watched) == (1, 0)
        assert await store.ping()

    run(flow, url)


def test_take_many_and_noscript(url: str) -> None:
    async def flow(store: AsyncRedisStore) -> list[Any]:
        calls = [TakeCall(key(f"k{i}"), 1, 10, 10.0) for i in range(40)]
        first = await store.take_many(calls)
        raw: Any
        if url.startswith("redis+cluster"):
            raw = redis.RedisCluster.from_url(url.replace("redis+cluster", "redis"))
            for node in raw.get_primaries():
                raw.get_redis_connection(node).script_flush()
        else:
            raw = redis.Redis.from_url(url)
            raw.script_flush()
        raw.close()
        second = await store.take_many(calls)
        single = await store.take(key("k0"), 1, **RATE)
        return [*first, *second, single]

    results = run(flow, url)
    assert all(not isinstance(r, StoreError) and r.granted == 1 for r in results), results


def test_killed_server(redis_fault_server: RedisServer) -> None:
    async def flow(store: AsyncRedisStore) -> list[StoreError]:
        await store.take(key("a"), 1, **RATE)
        redis_fault_server.kill()
        errors = []
        for _ in range(5):
            try:
                await store.take(key("a"), 1, **RATE)
            except StoreError as exc:
                errors.append(exc)
        return errors

    errors = run(flow, redis_fault_server.url)
    assert len(errors) == 5
    assert not any(isinstance(e, redis.RedisError) for e in errors)
    assert isinstance(errors[-1], StoreUnavailable)


def test_paused_server_is_bounded(redis_fault_server: RedisServer) -> None:
    async def flow(store: AsyncRedisStore) -> float:
        await store.take(key("a"), 1, **RATE)
        redis_fault_server.pause()
        worst = 0.0
        try:
            for _ in range(4):
                started = time.perf_counter()
                with pytest.raises(StoreError):
                    await store.take(key("a"), 1, **RATE)
                worst = max(worst, time.perf_counter() - started)
        finally:
            redis_fault_server.resume()
        return worst

    assert run(flow, redis_fault_server.url) < 0.15
