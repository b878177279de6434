"""What the operations loop sends to Redis (issue #11): one round trip per pass at most,
bans and brownout fetched only when their version changes, the version read by the
engine's heartbeat, top-offender TTLs set once per minute key, ended bans dropped by
writers. Against the real Redis of the test session."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from ratemw import AsyncLimiter, Limiter, RequestInfo
from ratemw.ops.measures import Ban, Brownout
from ratemw.ops.shared import TOP_TTL_SECONDS, Layout


def rules(rule: str) -> dict[str, Any]:
    return {"rules": [{"name": rule, "match": {"path": "/login"}, "limit": "1/hour"}]}


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


def fresh() -> tuple[str, str, Layout]:
    app = f"t{uuid.uuid4().hex[:8]}"
    return app, f"login-{uuid.uuid4().hex[:6]}", Layout(app)


def action(lim: Limiter, ip: str) -> str:
    d = lim.decide(RequestInfo(path="/login", peer=ip))
    return "allowed" if d.allowed else str(d.action)


def test_bans_are_fetched_when_their_version_changes(redis_url: str, client: Any) -> None:
    app, rule, layout = fresh()
    lim = Limiter(rules(rule), redis_url=redis_url,
                  operations={"interval_seconds": 0, "app": app})  # fmt: skip
    lim.ops.tick()  # the first pass fetches
    assert lim.ops.fleet.fetched == 0
    # Written behind the version's back (as an older ratemw would): not fetched...
    quiet = Ban(rule, lim.ops.digest("203.0.113.1"), "203.0.113.1", time.time() + 60)
    client.zadd(layout.bans_z, {quiet.member: quiet.until})
    client.hset(layout.bans_i, quiet.member, json.dumps({"identity": quiet.identity}))
    lim.ops.tick()
    assert action(lim, "203.0.113.1") == "allowed"
    # ...until a writer bumps the version: then everything running is.
    layout.add_ban(client, Ban(rule, lim.ops.digest("203.0.113.2"), "203.0.113.2",
                               time.time() + 60))  # fmt: skip
    lim.ops.tick()
    assert lim.ops.fleet.fetched == 1
    assert action(lim, "203.0.113.1") == action(lim, "203.0.113.2") == "ban"
    layout.set_brownout(client, Brownout(0.5, time.time() + 60), time.time())
    lim.ops.tick()
    factor = lambda: None if lim.ops.brownout is None else lim.ops.brownout.factor  # noqa: E731
    assert factor() == 0.5
    assert layout.clear_brownout(client)
    lim.ops.tick()
    assert factor() is None and lim.ops.fleet.fetched == 3
    lim.close()


def test_the_heartbeat_brings_the_version(redis_url: str, client: Any) -> None:
    app, rule, layout = fresh()
    lim = Limiter(rules(rule), redis_url=redis_url,
                  operations={"interval_seconds": 0, "app": app, "poll_seconds": 3600})  # fmt: skip
    engine = lim.engine
    assert engine.watch_key == layout.version_key
    assert action(lim, "203.0.113.7") == "allowed"  # the engine starts: first heartbeat
    assert engine.watched == 0
    lim.ops.tick()  # fetches once; from now on it never asks for the version itself
    layout.add_ban(client, Ban(rule, lim.ops.digest("203.0.113.7"), "203.0.113.7",
                               time.time() + 60))  # fmt: skip
    lim.ops.tick()
    assert action(lim, "203.0.113.7") == "reject"  # not heard of yet: 1/hour refuses
    engine.reconcile(time.monotonic() + engine.heartbeat_every)  # a heartbeat is due
    assert engine.watched == 1
    lim.ops.tick()
    assert action(lim, "203.0.113.7") == "ban"
    lim.close()


def test_heartbeats_go_every_other_pass(redis_url: str) -> None:
    _, rule, _ = fresh()
    lim = Limiter(rules(rule), redis_url=redis_url, operations={"interval_seconds": 0})
    engine = lim.engine
    lim.decide(RequestInfo(path="/login", peer="203.0.113.8"))
    now, beats = time.monotonic(), {engine.watched_at}  # the first heartbeat's
    for i in range(1, 9):  # 8 passes half a heartbeat period apart (time as they say)
        engine.reconcile(now + i * engine.heartbeat_every / 2)
        beats.add(engine.watched_at)
    assert len(beats) == 1 + 4  # every other pass heard a heartbeat's answer
    lim.close()


def test_top_offender_ttls_are_set_once_per_minute_key(redis_url: str, client: Any) -> None:
    app, rule, layout = fresh()
    lim = Limiter(rules(rule), redis_url=redis_url,
                  operations={"interval_seconds": 0, "app": app})  # fmt: skip
    for _ in range(3):
        action(lim, "203.0.113.9")
    lim.ops.tick()
    minute = lim.ops.fleet.touched[rule]
    key = layout.top_key(rule, minute)
    assert client.zscore(key, "203.0.113.9") == 2
    assert 0 < client.ttl(key) <= TOP_TTL_SECONDS and client.ttl(layout.rules_key) > 0
    assert rule.encode() in client.smembers(layout.rules_key)
    client.persist(key)
    action(lim, "203.0.113.9")
    lim.ops.tick()
    if lim.ops.fleet.touched[rule] == minute:  # same minute key: its TTL is not set again
        assert client.ttl(key) == -1 and client.zscore(key, "203.0.113.9") == 3
    lim.close()


def test_writers_drop_ended_bans(client: Any) -> None:
    _, rule, layout = fresh()
    now = time.time()
    ended = Ban(rule, "a" * 32, "203.0.113.10", now - 1, address="203.0.113.10")
    layout.add_bans(client, [ended], now - 10)  # it was running when written
    assert client.hget(layout.bans_a, ended.member) is not None
    running = Ban(rule, "b" * 32, "h:" + "b" * 32, now + 60)
    layout.add_ban(client, running)
    assert client.zscore(layout.bans_z, ended.member) is None
    assert client.hget(layout.bans_i, ended.member) is None
    assert client.hget(layout.bans_a, ended.member) is None
    assert client.zscore(layout.bans_z, running.member) == running.until


def test_the_async_engine_heartbeat_brings_the_version_too(redis_url: str, client: Any) -> None:
    import asyncio

    app, rule, layout = fresh()

    async def flow() -> None:
        lim = AsyncLimiter(rules(rule), redis_url=redis_url,
                           operations={"interval_seconds": 0, "app": app})  # fmt: skip
        engine = lim.engine
        assert engine.watch_key == layout.version_key
        assert (await lim.decide(RequestInfo(path="/login", peer="203.0.113.11"))).allowed
        assert engine.watched == 0
        layout.set_brownout(client, Brownout(0.5, time.time() + 60), time.time())
        await engine.reconcile(time.monotonic() + engine.heartbeat_every)
        assert engine.watched == 1
        await lim.aclose()

    asyncio.run(flow())


@pytest.mark.cluster
def test_one_round_trip_per_pass_works_on_a_cluster(redis_cluster_url: str) -> None:
    _, rule, layout = fresh()
    app = layout.prefix.split(":")[1]
    ops = {"interval_seconds": 0, "app": app}
    a = Limiter(rules(rule), redis_url=redis_cluster_url, operations=ops)
    b = Limiter(rules(rule), redis_url=redis_cluster_url, operations=ops)
    for _ in range(3):
        action(a, "203.0.113.12")
    assert a.engine.watched == 0  # heartbeat and version: one script, one slot
    a.ban(rule, "203.0.113.13", 60)
    a.ops.tick()  # penalty-free rule: top offenders and the ban in one pipeline
    b.ops.tick()
    assert action(b, "203.0.113.13") == "ban"
    client = a.ops.fleet.store.redis()
    assert layout.top(client, time.time(), rule=rule)[rule] == [("203.0.113.12", 2)]
    a.close()
    b.close()
