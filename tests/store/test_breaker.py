from __future__ import annotations

import pytest

from ratemw.store.breaker import CircuitBreaker
from ratemw.testing import ManualClock


@pytest.fixture
def breaker(clock: ManualClock) -> CircuitBreaker:
    return CircuitBreaker(clock=clock.monotonic, jitter=lambda: 0.5)


def _state(breaker: CircuitBreaker) -> str:
    return breaker.state  # a call, so mypy does not narrow the property between checks


def _fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.allow()
        breaker.record_failure()


def test_opens_after_three_consecutive_failures(breaker: CircuitBreaker) -> None:
    _fail(breaker, 2)
    assert _state(breaker) == "closed"
    _fail(breaker, 1)
    assert _state(breaker) == "open"
    assert not breaker.allow()


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        breaker.record_success()
    _fail(breaker, 2)
    breaker.record_success()
    _fail(breaker, 2)
    assert _state(breaker) == "closed"


def test_opens_on_failure_ratio_within_one_second(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    for outcome in [True, False, False, True]:
        assert breaker.allow()
        breaker.record_success() if outcome else breaker.record_failure()
        clock.advance(0.1)
    assert _state(breaker) == "closed"
    _fail(breaker, 1)  # 3 of 5 failed, never 3 in a row
    assert _state(breaker) == "open"


def test_ratio_needs_enough_calls_and_forgets_old_ones(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    for outcome in [False, False, True, False, False, True]:
        breaker.record_success() if outcome else breaker.record_failure()
        clock.advance(0.6)  # each pair is in a different second
    assert _state(breaker) == "closed"


def test_one_probe_after_backoff_then_close(breaker: CircuitBreaker, clock: ManualClock) -> None:
    _fail(breaker, 3)
    clock.advance(0.24)
    assert not breaker.allow()
    clock.advance(0.02)
    assert _state(breaker) == "half_open"
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record_success()
    assert _state(breaker) == "closed"
    assert breaker.openings == 0
    assert breaker.allow()


def test_failed_probe_doubles_backoff_up_to_cap(
    breaker: CircuitBreaker, clock: ManualClock
) -> None:
    _fail(breaker, 3)
    waits = []
    for _ in range(8):
        opened_at = clock.monotonic()
        waits.append(round(breaker.retry_at - opened_at, 6))
        clock.set(breaker.retry_at)
        assert breaker.allow()
        breaker.record_failure()
    assert waits == [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_jitter_spreads_backoff(clock: ManualClock) -> None:
    low = CircuitBreaker(clock=clock.monotonic, jitter=lambda: 0.0)
    high = CircuitBreaker(clock=clock.monotonic, jitter=lambda: 0.999)
    _fail(low, 3)
    _fail(high, 3)
    assert low.retry_at < high.retry_at
    assert 0.19 < low.retry_at - clock.monotonic() < 0.31
    assert 0.19 < high.retry_at - clock.monotonic() < 0.31


def test_lost_probe_stops_blocking(breaker: CircuitBreaker, clock: ManualClock) -> None:
    _fail(breaker, 3)
    clock.advance(0.3)
    assert breaker.allow()
    clock.advance(0.5)
    assert not breaker.allow()
    clock.advance(0.6)  # the probe never reported: let another through
    assert breaker.allow()
