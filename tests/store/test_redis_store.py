from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from ratemw.errors import StoreError
from ratemw.store import KeyBuilder, RedisStore, StoreUnavailable, TakeCall, TakeMode
from ratemw.store.redis import parse_target
from ratemw.store.server import RedisServer
from tests.redis_servers import RedisCluster

pytestmark = pytest.mark.redis

RATE: dict[str, Any] = {"limit": 10, "period_seconds": 10.0}  # one token per second, burst 10
KEYS = KeyBuilder("test", hash_key="test")


def key(name: str, kind: str = "g") -> str:
    return KEYS.key("policy", name, kind)


def wait_for(check: Callable[[], bool], deadline_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.02)


@pytest.fixture(
    params=[
        pytest.param("single"),
        pytest.param("cluster", marks=pytest.mark.cluster),
    ]
)
def url(request: pytest.FixtureRequest) -> str:
    name = "redis_url" if request.param == "single" else "redis_cluster_url"
    value: str = request.getfixturevalue(name)
    return value


@pytest.fixture
def store(url: str) -> Iterator[RedisStore]:
    s = RedisStore(url)
    yield s
    s.close()


@pytest.fixture
def raw(url: str) -> Iterator[Any]:
    client: Any
    if url.startswith("redis+cluster://"):
        client = redis.RedisCluster.from_url(url.replace("redis+cluster", "redis"))
    else:
        client = redis.Redis.from_url(url)
    yield client
    client.close()


def flush_scripts(raw: Any) -> None:
    if isinstance(raw, redis.RedisCluster):
        for node in raw.get_primaries():
            raw.get_redis_connection(node).script_flush()
    else:
        raw.script_flush()


# -- GCRA take / give ------------------------------------------------------


def test_take_grants_then_denies_with_wait(store: RedisStore) -> None:
    first = store.take(key("a"), 10, **RATE)
    assert (first.granted, first.wait_seconds, first.remaining) == (10, 0.0, 0)
    assert abs(first.server_time - time.time()) < 5
    denied = store.take(key("a"), 2, **RATE)
    assert denied.granted == 0
    assert 1.5 < denied.wait_seconds <= 2.0


def test_take_partial_down_to_minimum(store: RedisStore) -> None:
    store.take(key("a"), 7, **RATE)
    assert store.take(key("a"), 5, minimum=2, **RATE).granted == 3
    assert store.take(key("a"), 5, minimum=1, **RATE).granted == 0
    assert math.isinf(store.take(key("b"), 11, **RATE).wait_seconds)


def test_take_reserve_books_within_horizon(store: RedisStore) -> None:
    store.take(key("a"), 10, **RATE)
    reserved = store.take(
        key("a"), 5, minimum=1, mode=TakeMode.RESERVE, horizon_seconds=3.0, **RATE
    )
    assert reserved.granted in (2, 3)  # a fraction of a token may have refilled meanwhile
    assert 2.0 < reserved.wait_seconds <= 3.0


def test_take_force_clamps_debt_at_one_burst(store: RedisStore, raw: Any) -> None:
    forced = store.take(key("a"), 1000, mode=TakeMode.FORCE, **RATE)
    assert forced.granted == 1000
    tat_us = float(raw.get(key("a")))
    assert tat_us / 1e6 - forced.server_time == pytest.approx(20.0, abs=0.01)
    assert 10.9 < store.take(key("a"), 1, **RATE).wait_seconds <= 11.0
    assert raw.pttl(key("a")) <= 21_000


def test_give_never_over_credits(store: RedisStore, raw: Any) -> None:
    # refill is negligible during the test
    slow: dict[str, Any] = {"limit": 10, "period_seconds": 1000.0}
    assert store.give(key("missing"), 5, **slow) == 0
    assert raw.exists(key("missing")) == 0
    store.take(key("a"), 3, **slow)
    assert store.give(key("a"), 10, **slow) == 3
    assert store.take(key("a"), 10, **slow).granted == 10
    assert store.take(key("a"), 1, **slow).granted == 0
    assert store.give(key("a"), 4, **slow) == 4
    assert store.take(key("a"), 5, minimum=1, **slow).granted == 4


# -- sliding window -----------------------------------------------------------


def test_window_take_and_give(store: RedisStore) -> None:
    window = 3600.0  # long, so the test never straddles a boundary by accident
    first = store.window_take(key("w", "w"), 3, limit=5, window_seconds=window)
    assert first.granted == 3
    assert first.server_time < first.window_end <= first.server_time + window
    denied = store.window_take(key("w", "w"), 3, limit=5, window_seconds=window)
    assert denied.granted == 0
    assert denied.wait_seconds > 0
    assert (
        store.window_take(key("w", "w"), 3, limit=5, window_seconds=window, minimum=1).granted == 2
    )
    assert store.window_give(key("w", "w"), 4, window_seconds=window, window=first.window) == 4
    assert store.window_give(key("w", "w"), 9, window_seconds=window, window=first.window) == 1
    assert store.window_give(key("w", "w"), 1, window_seconds=window, window=first.window - 1) == 0
    assert store.window_take(key("w", "w"), 5, limit=5, window_seconds=window).granted == 5


# -- concurrency slots --------------------------------------------------------


def test_slot_acquire_renew_release(store: RedisStore) -> None:
    k = key("c", "c")
    assert store.slot_acquire(k, "a", limit=2, ttl_seconds=30).acquired
    assert store.slot_acquire(k, "a", limit=2, ttl_seconds=30).held == 1  # idempotent
    assert store.slot_acquire(k, "b", limit=2, ttl_seconds=30).held == 2
    denied = store.slot_acquire(k, "c", limit=2, ttl_seconds=30)
    assert not denied.acquired
    assert 29 < denied.wait_seconds <= 30
    assert store.slot_renew(k, "b", ttl_seconds=30)
    assert not store.slot_renew(k, "zzz", ttl_seconds=30)
    assert store.slot_release(k, "a")
    assert not store.slot_release(k, "a")
    assert store.slot_acquire(k, "c", limit=2, ttl_seconds=30).acquired


def test_expired_slot_frees_and_is_never_resurrected(store: RedisStore, raw: Any) -> None:
    k = key("c", "c")
    assert store.slot_acquire(k, "crashed", limit=1, ttl_seconds=0.2).acquired
    wait_for(lambda: store.slot_acquire(k, "next", limit=1, ttl_seconds=30).acquired)
    assert not store.slot_renew(k, "crashed", ttl_seconds=30)
    assert raw.zscore(k, "crashed") is None


# -- process registry ---------------------------------------------------------


def test_heartbeat_counts_and_drops_silent_processes(store: RedisStore) -> None:
    procs = KEYS.procs()
    assert store.heartbeat(procs, "p1", liveness_seconds=0.3).processes == 1
    assert store.heartbeat(procs, "p2", liveness_seconds=0.3).processes == 2
    wait_for(lambda: store.heartbeat(procs, "p2", liveness_seconds=0.3).processes == 1)


def test_a_heartbeat_reads_a_watched_counter_in_the_same_call(store: RedisStore, raw: Any) -> None:
    procs = KEYS.procs()
    watched = procs.replace(":procs", ":opsv")  # same hash tag: one slot in a Cluster
    assert store.heartbeat(procs, "p1", liveness_seconds=5).watched is None
    assert store.heartbeat(procs, "p1", liveness_seconds=5, watch=watched).watched == 0
    raw.incr(watched)
    seen = store.heartbeat(procs, "p1", liveness_seconds=5, watch=watched)
    assert (seen.processes, seen.watched) == (1, 1)


# -- scripts, TTLs, pipelining ------------------------------------------------


def test_noscript_after_script_flush(store: RedisStore, raw: Any) -> None:
    assert store.take(key("a"), 1, **RATE).granted == 1
    flush_scripts(raw)
    assert store.take(key("a"), 1, **RATE).granted == 1
    flush_scripts(raw)
    results = store.take_many([TakeCall(key(f"m{i}"), 1, 10, 10.0) for i in range(5)])
    assert [getattr(r, "granted", r) for r in results] == [1] * 5


def test_every_key_has_a_ttl(store: RedisStore, raw: Any) -> None:
    store.take(key("a"), 3, **RATE)
    store.take(key("b"), 100, mode=TakeMode.FORCE, **RATE)
    store.take(key("r"), 10, **RATE)
    store.take(key("r"), 3, mode=TakeMode.RESERVE, horizon_seconds=1.0, **RATE)
    store.give(key("a"), 1, **RATE)
    taken = store.window_take(key("w", "w"), 2, limit=5, window_seconds=60)
    store.window_give(key("w", "w"), 1, window_seconds=60, window=taken.window)
    store.slot_acquire(key("c", "c"), "s", limit=2, ttl_seconds=5)
    store.slot_renew(key("c", "c"), "s", ttl_seconds=5)
    store.slot_acquire(key("d", "c"), "s", limit=2, ttl_seconds=5)
    store.slot_acquire(key("d", "c"), "t", limit=2, ttl_seconds=5)
    store.slot_release(key("d", "c"), "t")
    store.heartbeat(KEYS.procs(), "p", liveness_seconds=5)
    store.take_many([TakeCall(key(f"m{i}"), 1, 10, 10.0) for i in range(5)])
    keys = list(raw.scan_iter(count=1000))
    assert len(keys) == 12
    for k in keys:
        assert raw.pttl(k) > 0, k


def test_take_many_across_slots_never_crossslot(store: RedisStore) -> None:
    calls = [TakeCall(key(f"k{i}"), 2, 10, 10.0, minimum=1) for i in range(60)]
    results = store.take_many(calls)
    assert all(not isinstance(r, StoreError) and r.granted == 2 for r in results), results
    assert store.take_many([]) == []


def test_take_many_reports_a_bad_key_in_place(store: RedisStore, raw: Any) -> None:
    raw.hset(key("wrongtype"), "x", "1")
    results = store.take_many(
        [TakeCall(key("ok"), 1, 10, 10.0), TakeCall(key("wrongtype"), 1, 10, 10.0)]
    )
    assert not isinstance(results[0], StoreError)
    assert isinstance(results[1], StoreError)
    with pytest.raises(StoreError):
        store.take(key("wrongtype"), 1, **RATE)
    assert all(b.state == "closed" for b in store.breakers.values())  # data error, not outage


def test_no_hidden_client_retries(store: RedisStore) -> None:
    assert store.ping()
    client = store._connect().client
    retry = client.retry if isinstance(client, redis.RedisCluster) else client.get_retry()
    # redis-py 5.0 (the lowest we support) has no get_retries(), only _retries
    retries = retry.get_retries() if hasattr(retry, "get_retries") else retry._retries
    assert retries == 0


# -- lifecycle and faults (single server) ------------------------------------------


def test_construction_touches_no_network() -> None:
    store = RedisStore("redis://127.0.0.1:1")  # nothing listens there
    store.close()
    cluster = RedisStore("redis+cluster://127.0.0.1:1")
    assert not cluster.ping()
    cluster.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork() in a threaded runner
def test_fork_child_builds_its_own_connection(redis_url: str) -> None:
    store = RedisStore(redis_url)
    store.take(key("f"), 1, **RATE)
    parent_conn = store._connect()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = (
                store.take(key("f"), 1, **RATE).granted == 1 and store._connect() is not parent_conn
            )
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store._connect() is parent_conn
    assert store.take(key("f"), 1, **RATE).granted == 1
    store.close()


def test_killed_server_raises_store_error_then_unavailable(redis_fault_server: RedisServer) -> None:
    store = RedisStore(redis_fault_server.url)
    assert store.take(key("a"), 1, **RATE).granted == 1
    redis_fault_server.kill()
    with pytest.raises(StoreError) as caught:
        store.take(key("a"), 1, **RATE)
    assert not isinstance(caught.value, redis.RedisError)
    errors = []
    for _ in range(5):
        try:
            store.take(key("a"), 1, **RATE)
        except StoreError as exc:
            errors.append(exc)
    assert isinstance(errors[-1], StoreUnavailable)
    assert store.breakers["*"].state == "open"
    with pytest.raises(StoreError):
        store.give(key("a"), 1, **RATE)
    store.close()


def test_restart_is_handled_transparently(redis_fault_server: RedisServer) -> None:
    store = RedisStore(redis_fault_server.url)
    assert store.take(key("a"), 4, **RATE).granted == 4
    redis_fault_server.restart()  # stale pooled connection, and no scripts loaded
    assert store.take(key("a"), 10, **RATE).granted == 10  # state gone: full bucket
    store.close()


def test_paused_server_costs_no_more_than_the_timeout(redis_fault_server: RedisServer) -> None:
    store = RedisStore(redis_fault_server.url)
    store.take(key("a"), 1, **RATE)
    redis_fault_server.pause()
    try:
        for _ in range(6):
            started = time.perf_counter()
            with pytest.raises(StoreError):
                store.take(key("a"), 1, **RATE)
            assert time.perf_counter() - started < 0.15
        assert store.breakers["*"].state == "open"
    finally:
        redis_fault_server.resume()
    store.close()


def test_parse_target() -> None:
    assert parse_target("redis://h:1/0", False).kind == "single"
    assert parse_target("redis://h:1", True).kind == "cluster"
    cluster = parse_target("redis+cluster://h:7000", False)
    assert (cluster.kind, cluster.url) == ("cluster", "redis://h:7000")
    sentinel = parse_target("redis+sentinel://u:p%40ss@s1:26379,s2:26380/mymaster/2", False)
    assert sentinel.kind == "sentinel"
    assert sentinel.sentinels == (("s1", 26379), ("s2", 26380))
    assert sentinel.service == "mymaster"
    assert sentinel.options == {"db": 2, "username": "u", "password": "p@ss"}
    with pytest.raises(ValueError):
        parse_target("redis+sentinel://s1:26379", False)


def test_sentinel_store_is_lazy() -> None:
    store = RedisStore("redis+sentinel://127.0.0.1:1/mymaster")
    with pytest.raises(StoreError):
        store.take(key("a"), 1, **RATE)
    store.close()


def test_cluster_per_node_breakers(redis_cluster: RedisCluster) -> None:
    redis_cluster.flush()
    store = RedisStore(redis_cluster.url)
    store.take_many([TakeCall(key(f"n{i}"), 1, 10, 10.0) for i in range(30)])
    assert len(store.breakers) == 3
    store.close()
