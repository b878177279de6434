"""An unreachable ``redis_url`` is logged: once when the store is first unreachable,
once when it is back, naming the URL redacted and pointing at ``ratemw_breaker_state``
(issue #16, bug 4). On a real ``redis-server`` that the test stops and starts again."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.store.breaker import CircuitBreaker, store_breaker
from ratemw.store.server import RedisServer

DOWN = "is unreachable (circuit breaker open)"
BACK = "is reachable again"
RULES = {"rules": [{"name": "login", "match": {"path": "/login"}, "limit": "1000/minute",
                    "lease": {"size": 1}}]}  # fmt: skip
INFO = RequestInfo(path="/login", peer="198.51.100.90")


def lines(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def poll(check: Callable[[], bool], deadline_seconds: float, what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_an_outage_is_two_lines_naming_the_url_and_the_metric(
    redis_fault_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    server = redis_fault_server
    limiter = Limiter(RULES, redis_url=server.url, operations={"interval_seconds": 0})
    with caplog.at_level(logging.INFO, logger="ratemw"):
        assert limiter.decide(INFO).allowed  # a store call (lease size 1): reachable
        server.stop()

        def down() -> bool:
            limiter.decide(INFO)  # each decision asks the store, until the breaker opens
            return bool(lines(caplog, DOWN))

        poll(down, 15, "the outage to be logged")
        for _ in range(50):  # many more decisions, breaker probes included: no more lines
            limiter.decide(INFO)
        assert limiter.metrics().breaker_state.get(("*",)) in (1, 2)  # open or half-open
        server.start()

        def back() -> bool:
            limiter.decide(INFO)
            return bool(lines(caplog, BACK))

        poll(back, 15, "the recovery to be logged")
        for _ in range(20):
            limiter.decide(INFO)
    (outage,) = lines(caplog, DOWN)
    (recovery,) = lines(caplog, BACK)
    assert f"Redis at {server.url} " in outage
    assert "ratemw_breaker_state" in outage and "on_store_error" in outage
    assert f"Redis at {server.url} " in recovery
    assert limiter.metrics().breaker_state.get(("*",)) == 0
    limiter.close()


def test_the_url_is_redacted_and_each_outage_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    name = store_breaker("redis://ratemw:s3cret-pass@redis.internal:6379/0").name
    assert name == "redis://ratemw:***@redis.internal:6379/0"
    breaker = CircuitBreaker(clock=lambda: now[0], jitter=lambda: 0.5, name=name)
    with caplog.at_level(logging.INFO, logger="ratemw"):
        for outage in range(2):
            for _ in range(3):  # three consecutive failures open it
                breaker.record_failure()
            for _ in range(4):  # failed probes keep it open, silently
                now[0] += 10.0  # past the longest backoff (8 s)
                assert breaker.allow()
                breaker.record_failure()
            now[0] += 10.0
            assert breaker.allow()
            breaker.record_success()
            assert len(lines(caplog, DOWN)) == len(lines(caplog, BACK)) == outage + 1
    assert "s3cret-pass" not in caplog.text
    assert f"Redis at {name} " in lines(caplog, DOWN)[0]
