from __future__ import annotations

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.testing import ManualClock, disabled, reset

RULES = {"version": 1, "rules": [{"name": "r", "match": {"path": "/"}, "limit": "1/hour"}]}


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(start=10.0, wall_offset=100.0)
    assert (clock.monotonic(), clock.time()) == (10.0, 110.0)
    assert clock.advance(2.5) == 12.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.set(20.0)
    assert clock.monotonic() == 20.0


def test_reset_and_disabled() -> None:
    limiter = Limiter(RULES, clock=ManualClock())
    info = RequestInfo(path="/", peer="198.51.100.1")
    assert limiter.decide(info).allowed
    assert not limiter.decide(info).allowed
    with disabled(limiter):
        assert all(limiter.decide(info).allowed for _ in range(5))
    assert not limiter.decide(info).allowed
    reset(limiter)
    assert limiter.decide(info).allowed
