"""Redis Sentinel for real: a master, a replica and three Sentinels (tests/redis_servers.py).

The master is SIGKILLed; the limiters and both store twins must follow the failover to
the replica the Sentinels promote. Bounds come from docs/global.md ("Redis Sentinel").
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from ratemw.errors import StoreError
from ratemw.store import (
    AsyncRedisStore,
    KeyBuilder,
    RedisStore,
    StoreUnavailable,
    TakeCall,
    TakeResult,
)
from ratemw.store.redis import parse_target
from tests import global_workers
from tests.processes import free_port
from tests.redis_servers import RedisSentinel

pytestmark = pytest.mark.redis

SPAWN = multiprocessing.get_context("spawn")
T = TypeVar("T")

FAILOVER_DEADLINE = 30.0  # down-after 1 s + election + promotion; seconds on a loaded machine
API = {"name": "api", "match": {"path": "/api/**"}, "limit": "100/second", "burst": 200}
KEYS = KeyBuilder("test", hash_key="test")
RATE: dict[str, Any] = {"limit": 10, "period_seconds": 3600.0}  # no refill during the test


def poll(check: Callable[[], T | None], deadline_seconds: float, what: str) -> T:
    """``check()``'s first truthy result; fails after the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {deadline_seconds} s waiting for {what}")
        time.sleep(0.02)


def with_dead_sentinel(url: str) -> str:
    """The URL with a Sentinel that is down listed first (nothing listens on its port)."""
    return url.replace("redis+sentinel://", f"redis+sentinel://127.0.0.1:{free_port()},", 1)


def registered_since(setup: RedisSentinel, since: float) -> int:
    """Processes whose heartbeat reached the current master at or after ``since``."""
    with setup.master().client() as client:
        return sum(
            client.zcount(key, since * 1e6, "+inf")
            for key in client.scan_iter(match="ratemw:*:{meta}:procs")
        )


def test_limiters_follow_a_failover_under_load(
    redis_sentinel: RedisSentinel, redis_sentinel_url: str
) -> None:
    procs_n, rate, seconds = 4, 100.0, 12.0
    go, ready, queue = SPAWN.Event(), SPAWN.Queue(), SPAWN.Queue()
    url = with_dead_sentinel(redis_sentinel_url)
    args = (url, {"version": 1, "rules": [API]}, rate, seconds, go, ready, queue)
    procs = [SPAWN.Process(target=global_workers.steady, args=args) for _ in range(procs_n)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=60)
        go.set()
        went = time.time()
        poll(lambda: registered_since(redis_sentinel, went) == procs_n, 15, "4 leasing processes")
        killed_at = time.time()
        old = redis_sentinel.kill_master()
        redis_sentinel.wait_for_new_master(old, FAILOVER_DEADLINE)
        back_at = time.time()
        # Leasing back: every process's heartbeat reaches the new master.
        poll(lambda: registered_since(redis_sentinel, back_at) == procs_n, 10, "leasing back")
        reports = [queue.get(timeout=90) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    for r in reports:
        assert "error" not in r, r.get("error")
    records = [rec for r in reports for rec in r["records"]]
    assert sum(r["errors"] for r in reports) == 0  # nothing escaped decide()
    assert {status for _, _, status, _ in records} <= {200, 429}  # never 500, never 503
    # No decision waits longer than the command timeout plus the lease wait (LEASES.md §14.3).
    slowest = max(latency for _, latency, _, _ in records)
    # the outage policy (0.15 s of timeouts) plus a loaded 2-core machine's scheduling
    assert slowest < 0.250, slowest
    # docs/global.md, "Redis Sentinel": f·B + R·T_L + P·max(1, B/P_exp) + (P/P_exp)·R·D
    # with D = killed → elected and P = P_exp = 4, plus what the replica may not have had:
    # P·max(N_cap, ceil(R·T_L/P)) with N_cap = floor(f·B/P) = 10.
    burst, strand, lifetime = 200, 0.2 * 200, 1.0
    outage = back_at - killed_at
    during = sum(1 for t, _, s, _ in records if killed_at <= t < back_at and s == 200)
    lost = procs_n * max(10, math.ceil(rate * lifetime / procs_n))
    high = strand + rate * lifetime + procs_n * max(1, burst / procs_n) + rate * outage + lost
    assert during <= high, (during, outage, high)
    assert during >= 0.5 * rate * outage, (during, outage)  # the local share kept serving
    # Each process leases again (not degraded) soon after the election: breaker backoff
    # (≤ 1 s) plus a discovery; twice that for a loaded machine.
    for r in reports:
        after = [t for t, _, _, degraded in r["records"] if t >= back_at and not degraded]
        resumed = min(after, default=math.inf)
        assert resumed - back_at <= 2.0, resumed - back_at
    # What was admitted during the outage was debited on the new master.
    admits = sum(r["outage_admits"] for r in reports)
    assert admits > 0
    assert sum(r["debited"] for r in reports) == admits


def eventually(call: Callable[[], T], what: str) -> T:
    """``call()`` once the store follows the failover (breaker closed again)."""
    result: list[T] = []

    def attempt() -> bool:
        try:
            result.append(call())
        except StoreError:
            return False
        return True

    poll(attempt, FAILOVER_DEADLINE, what)
    return result[0]


async def eventually_async(call: Callable[[], Any], what: str) -> Any:
    deadline = time.monotonic() + FAILOVER_DEADLINE
    while True:
        try:
            return await call()
        except StoreError:
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def test_store_twins_follow_a_failover_and_reload_their_scripts(
    redis_sentinel: RedisSentinel, redis_sentinel_url: str
) -> None:
    sync_key, async_key = KEYS.key("p", "sync", "g"), KEYS.key("p", "async", "g")
    store, astore = RedisStore(redis_sentinel_url), AsyncRedisStore(redis_sentinel_url)
    loop = asyncio.new_event_loop()
    try:
        assert store.take(sync_key, 4, **RATE).granted == 4
        assert loop.run_until_complete(astore.take(async_key, 4, **RATE)).granted == 4
        with redis_sentinel.master().client() as client:
            assert client.wait(1, 10_000) == 1  # replicated: the failover may not lose it
        old = redis_sentinel.kill_master()
        new = redis_sentinel.wait_for_new_master(old, FAILOVER_DEADLINE)
        # A promoted replica may lack the script cache (6.2's has it): force NOSCRIPT.
        with new.client() as client:
            client.script_flush()
        taken = eventually(lambda: store.take(sync_key, 10, **RATE, minimum=1), "sync take")
        assert taken.granted == 6  # the 4 taken before the failover survived it
        with new.client() as client:
            client.script_flush()
        calls = [TakeCall(KEYS.key("p", str(i), "g"), 1, **RATE) for i in range(3)]
        assert all(isinstance(r, TakeResult) and r.granted == 1 for r in store.take_many(calls))
        assert store.give(sync_key, 2, **RATE) == 2
        assert store.heartbeat(KEYS.procs(), "sync", liveness_seconds=4).processes == 1

        async def follow() -> None:
            with new.client() as client:
                client.script_flush()
            taken = await eventually_async(
                lambda: astore.take(async_key, 10, **RATE, minimum=1), "async take"
            )
            assert taken.granted == 6
            with new.client() as client:
                client.script_flush()
            replies = await astore.take_many(calls)
            assert all(isinstance(r, TakeResult) and r.granted == 1 for r in replies)
            assert await astore.give(async_key, 2, **RATE) == 2
            beat = await astore.heartbeat(KEYS.procs(), "async", liveness_seconds=4)
            assert beat.processes == 2

        loop.run_until_complete(follow())
        with new.client() as client:  # the state lives on the new master
            assert client.exists(sync_key, async_key) == 2
    finally:
        store.close()
        loop.run_until_complete(astore.aclose())
        loop.close()


def test_a_dead_sentinel_costs_no_retries(redis_sentinel_url: str) -> None:
    url = with_dead_sentinel(redis_sentinel_url)
    store = RedisStore(url)
    try:
        started = time.perf_counter()
        assert store.take(KEYS.key("p", "dead", "g"), 1, **RATE).granted == 1
        # redis-py's default retries would back off for seconds on the refused Sentinel
        assert time.perf_counter() - started < 0.5
    finally:
        store.close()

    async def take() -> float:
        astore = AsyncRedisStore(url)
        try:
            started = time.perf_counter()
            assert (await astore.take(KEYS.key("p", "dead", "g"), 1, **RATE)).granted == 1
            return time.perf_counter() - started
        finally:
            await astore.aclose()

    assert asyncio.run(take()) < 0.5


def test_a_master_refusing_writes_counts_as_an_outage(redis_fault_server: Any) -> None:
    """``min-replicas-to-write`` bounds what a failover loses; a master refusing writes
    for want of replicas must open the breaker like a dead one."""
    with redis_fault_server.client() as client:
        client.config_set("min-replicas-to-write", 1)
    store = RedisStore(redis_fault_server.url)
    try:
        for _ in range(3):
            with pytest.raises(StoreError, match="NOREPLICAS"):
                store.take(KEYS.key("p", "w", "g"), 1, **RATE)
        with pytest.raises(StoreUnavailable):
            store.take(KEYS.key("p", "w", "g"), 1, **RATE)
    finally:
        store.close()


def test_sentinel_urls_are_parsed_and_bounded() -> None:
    target = parse_target("redis+sentinel://u:s3cret@s1,[::1],[fd00::2]:26380/svc/3", False)
    assert target.sentinels == (("s1", 26379), ("::1", 26379), ("fd00::2", 26380))
    assert (target.service, target.options["db"]) == ("svc", 3)
    assert "s3cret" not in repr(target)
    too_many = ",".join(["h"] * 17)
    for bad in ("s1:x", ":1", "s1:0", "s1:65536", "[::1]:x", too_many):
        with pytest.raises(ValueError) as raised:
            parse_target(f"redis+sentinel://u:s3cret@{bad}/svc", False)
        assert "s3cret" not in str(raised.value)
