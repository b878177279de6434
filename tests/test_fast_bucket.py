"""The token bucket's fast path (ratemw.limiter.fast, ``TokenBucket.take`` written inline)
decides exactly as ``TokenBucket.take`` and renders the headers ``Decision`` would."""

from __future__ import annotations

import random

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.algorithms.token_bucket import TokenBucket
from ratemw.decision import Decision, encode_headers
from ratemw.testing import ManualClock


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    ("limit", "burst", "cost"),
    # The first two keep their RateLimit values rendered; the last has too many to keep.
    [("5/second", None, 1), ("10/minute", 3, 2), ("100000/hour", None, 1)],
)
def test_fast_path_matches_take(seed: int, limit: str, burst: int | None, cost: int) -> None:
    rule = {"name": "r", "match": {"path": "/x"}, "limit": limit, "cost": cost}
    if burst is not None:
        rule["burst"] = burst
    clock = ManualClock()
    limiter = Limiter({"rules": [rule]}, clock=clock, operations={"interval_seconds": 0})
    info = RequestInfo(path="/x", peer="192.0.2.1")
    limiter.decide(info)  # the first request goes through the general path: memo the path
    policy = limiter.snapshot.rules[0].policies[0]
    bucket = policy.algorithm
    assert type(bucket) is TokenBucket
    state = bucket.new_state(clock.monotonic())
    bucket.take(state, clock.monotonic(), cost)
    rng = random.Random(seed)
    for _ in range(300):
        clock.advance(rng.choice([0.0, 0.001, 0.05, 0.2, 1.0, 7.0]))
        now = clock.monotonic()
        expected = bucket.take(state, now, cost)
        decision = limiter.decide(info)
        assert type(decision) is not Decision  # a fast-path class: the fast path decided
        assert decision.retry_after == expected
        assert decision.status == (429 if expected else 200)
        # The headers the generic renderer gives for the same state and time.
        generic = Decision(decision.status, [(policy, decision._state)], now, clock.time,
                           decision.outcome, decision.retry_after)  # fmt: skip
        assert decision.headers == generic.headers
        # Rendered and encoded fields are kept per policy: the same bytes as encoding anew.
        assert decision.encoded_headers() == encode_headers(generic.headers)
    limiter.close()
