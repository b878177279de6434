"""The fleet's per-rule counts for the console's charts (ratemw/ops/fleet_counts.py),
against the session's real Redis: they add up to what the limiters count, ride the
operations pass's one pipeline, are counted once when a reply is lost, and an idle pass
sends nothing."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
import redis

from ratemw import Limiter, RequestInfo
from ratemw.ops.fleet_counts import (
    COUNTS_TTL_SECONDS,
    FIELDS,
    FleetCounts,
    counts_key,
    read_counts,
)
from ratemw.ops.stats import StatsRegistry

pytestmark = pytest.mark.redis


def rules(name: str) -> dict[str, Any]:
    return {"rules": [
        {"name": name, "match": {"path": "/login"}, "limit": "2/hour"},
        {"name": f"{name}-shadow", "match": {"path": "/login"}, "identity": "ip",
         "limit": "1/hour", "mode": "shadow"},
    ]}  # fmt: skip


class Counting:
    """A redis-py client whose pipelines count their round trips."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.round_trips = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)

    def pipeline(self, *args: Any, **kwargs: Any) -> Any:
        pipe = self.client.pipeline(*args, **kwargs)
        execute = pipe.execute

        def counted(*a: Any, **k: Any) -> Any:
            self.round_trips += 1
            return execute(*a, **k)

        pipe.execute = counted
        return pipe


def limiter(redis_url: str, app: str, name: str) -> tuple[Limiter, Counting]:
    lim = Limiter(rules(name), redis_url=redis_url, operations={
        "interval_seconds": 0, "app": app, "poll_seconds": 3600, "top_push_seconds": 0,
    })  # fmt: skip
    lim.ops.tick()  # the first pass fetches bans and brownout
    counting = Counting(lim.ops.fleet.client(lim.engine, redis_url))
    lim.ops.fleet.client = lambda engine, url: counting  # type: ignore[method-assign]
    return lim, counting


def decided(lims: list[Limiter]) -> Counter[tuple[str, str]]:
    """(rule, verdict|mode) -> decisions, summed over ``lims`` (what /metrics sums)."""
    out: Counter[tuple[str, str]] = Counter()
    for lim in lims:
        for (rule, _, _, verdict, mode), n in lim.metrics().decisions.items():
            out[(rule, f"{verdict}|{mode}")] += n
    return out


def test_counts_add_up_to_the_limiters_and_are_sent_once(redis_url: str) -> None:
    app, name = f"fc{uuid.uuid4().hex[:6]}", f"login-{uuid.uuid4().hex[:6]}"
    (a, ca), (b, cb) = limiter(redis_url, app, name), limiter(redis_url, app, name)
    client: Any = redis.Redis.from_url(redis_url)
    try:
        for i in range(9):
            lim = (a, b)[i % 2]
            lim.decide(RequestInfo(path="/login", peer=f"203.0.113.{i % 3}"))
        for lim, counting in ((a, ca), (b, cb)):
            lim.ops.tick()
            assert counting.round_trips == 1  # top offenders and counts: one pipeline
        window = read_counts(client, a.ops.layout.prefix, time.time(), 5)
        charted = Counter({(rule, field): window.total(rule, field)
                           for rule in window.series for field in FIELDS[:-2]})  # fmt: skip
        expected = decided([a, b])
        assert +charted == +expected and sum(expected.values()) == 18  # two rules each
        assert expected[(name, "rejected|enforce")] == 3
        assert expected[(f"{name}-shadow", "rejected|shadow")] == 6
        for lim, counting in ((a, ca), (b, cb)):  # idle: nothing new, nothing sent
            lim.ops.tick()
            assert counting.round_trips == 1
        again = read_counts(client, a.ops.layout.prefix, time.time(), 5)
        assert again.verdict_totals() == window.verdict_totals()
        key = counts_key(a.ops.layout.prefix, int(time.time() // 60))
        assert 0 < client.ttl(key) <= COUNTS_TTL_SECONDS
    finally:
        a.close()
        b.close()
        client.close()


def test_counts_survive_a_flushed_script_cache(redis_url: str) -> None:
    app, name = f"fc{uuid.uuid4().hex[:6]}", f"login-{uuid.uuid4().hex[:6]}"
    lim, _ = limiter(redis_url, app, name)
    client: Any = redis.Redis.from_url(redis_url)
    try:
        lim.decide(RequestInfo(path="/login", peer="203.0.113.50"))
        lim.ops.tick()
        assert lim.ops.fleet.counts is not None and lim.ops.fleet.counts.loaded
        client.script_flush()  # as after a Redis restart: EVALSHA answers NOSCRIPT
        lim.decide(RequestInfo(path="/login", peer="203.0.113.50"))
        lim.ops.tick()
        window = read_counts(client, lim.ops.layout.prefix, time.time(), 5)
        assert window.total(name, "allowed|enforce") == 2
    finally:
        lim.close()
        client.close()


def test_unknown_fields_and_long_windows_are_bounded(redis_url: str) -> None:
    client: Any = redis.Redis.from_url(redis_url)
    prefix = f"ratemw:fc{uuid.uuid4().hex[:6]}:"
    now = time.time()
    client.hset(counts_key(prefix, int(now // 60)), mapping={"r|allowed|enforce": 4,
                                                              "r|someday|new": 9})  # fmt: skip
    window = read_counts(client, prefix, now, 10_000)
    assert window.minutes == COUNTS_TTL_SECONDS // 60
    assert window.series == {"r": {"allowed|enforce": [0] * (window.minutes - 1) + [4]}}
    client.close()


def test_a_push_whose_reply_was_lost_is_counted_once(redis_url: str) -> None:
    client: Any = redis.Redis.from_url(redis_url)
    prefix = f"ratemw:fc{uuid.uuid4().hex[:6]}:"
    registry = StatsRegistry()
    stats = registry.get("r", "/x", "*")
    counts = FleetCounts(registry, {})
    stats.allowed += 5
    first = counts.command(prefix, time.time())
    assert first is not None
    client.execute_command(*first)  # applied, but the reply never came back (a timeout)
    stats.allowed += 2
    again = counts.command(prefix, time.time())
    assert again == first  # the same push, not a new one
    counts.sent(client, again, client.execute_command(*again))
    assert read_counts(client, prefix, time.time(), 2).total("r", "allowed|enforce") == 5
    rest = counts.command(prefix, time.time())
    assert rest is not None and rest[-2:] == ["r|allowed|enforce", 2]
    counts.sent(client, rest, client.execute_command(*rest))
    assert read_counts(client, prefix, time.time(), 2).total("r", "allowed|enforce") == 7
    assert counts.command(prefix, time.time()) is None
    client.close()
