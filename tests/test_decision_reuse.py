"""The token bucket's fast path reuses a decision its caller has dropped (ratemw.limiter.fast,
``_FREE``): a decision anyone still holds is never handed out again, in one thread or many."""

from __future__ import annotations

import sys
import threading
from collections import deque
from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.limiter import fast
from ratemw.testing import ManualClock

INFO = RequestInfo(path="/x", peer="192.0.2.1")


def _limiter(clock: ManualClock | None = None, limit: str = "3/second") -> Limiter:
    rules = {"rules": [{"name": "r", "match": {"path": "/x"}, "limit": limit}]}
    limiter = Limiter(rules, clock=clock, operations={"interval_seconds": 0})
    limiter.decide(INFO)  # the first request takes the general path and memoes the path
    return limiter


def test_a_held_decision_keeps_its_answer() -> None:
    clock = ManualClock()
    limiter = _limiter(clock)
    held = []
    for step in range(40):
        clock.advance(0.1 if step % 3 else 0.7)
        decision = limiter.decide(INFO)
        # What it says now, rendered now; later decisions must not change it.
        held.append((decision, decision.status, decision.retry_after, list(decision.headers)))
    assert {status for _, status, _, _ in held} == {200, 429}  # both classes were exercised
    assert len({id(d) for d, _, _, _ in held}) == len(held)  # none handed out twice
    for decision, status, retry_after, headers in held:
        assert (decision.status, decision.retry_after, decision.headers) == (
            status,
            retry_after,
            headers,
        )
    limiter.close()


def test_a_dropped_decision_is_reused_where_refcounts_tell() -> None:
    limiter = _limiter(limit="1000/second")  # every decision here is admitted
    fast_path = limiter.snapshot.rules[0].policies[0].fast
    cells = dict(zip(fast_path.__code__.co_freevars, fast_path.__closure__ or (), strict=True))
    spare = cells["spare_admitted"]
    before = id(spare.cell_contents)  # the cell keeps it alive: the id stays its own
    limiter.decide(INFO)  # dropped at once: nobody holds it
    # CPython 3.10-3.13 with the GIL reuses it; elsewhere (_FREE is -1) a new one is made.
    assert (id(spare.cell_contents) == before) is (fast._FREE != -1)
    kept = limiter.decide(INFO)
    assert limiter.decide(INFO) is not kept  # held: never handed out again
    limiter.close()


def test_threads_never_share_a_decision() -> None:
    threads = 4
    # A generous quota: admitted and rejected both happen as the threads race.
    limiter = Limiter(
        {"rules": [{"name": "r", "match": {"path": "/x"}, "limit": "2000/second"}]},
        operations={"interval_seconds": 0},
    )
    limiter.decide(INFO)
    start = threading.Barrier(threads)
    errors: list[str] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # hand the GIL over as often as CPython allows

    def work() -> None:
        recent: deque[tuple[Any, int, float, object]] = deque(maxlen=8)
        start.wait(timeout=30)
        for _ in range(3000):
            d = limiter.decide(INFO)
            recent.append((d, d.status, d._now, d._state))
            for held, status, now, state in recent:  # nothing held may change under us
                if (held.status, held._now, held._state) != (status, now, state):
                    errors.append("a held decision changed")
                    return

    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join(timeout=60)
            assert not thread.is_alive()
    finally:
        sys.setswitchinterval(interval)
        limiter.close()
    assert errors == []
