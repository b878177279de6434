"""Retry-After of a fleet brownout, on a real Redis (issue #16, bug 3).

A brownout's twin is a global limit there: its refusals went through the lease deny
cache, which ends after a lease lifetime (1 s) and answered with what was left of
*that*: ``Retry-After: 1`` while the twin's real wait was 12 s, so a client retrying
as told was refused again, for longer. Now every answer keeps the store's wait, and a
brownout's 503 never asks a client to come back after the brownout ends.
"""

from __future__ import annotations

import io
import time

from ratemw import Limiter, RequestInfo
from ratemw.cli import main

SEARCH = {"rules": [{"name": "search", "match": {"path": "/search"}, "limit": "10/minute"}]}
INFO = RequestInfo(path="/search", peer="198.51.100.80")


def brownout(redis_url: str, duration: str) -> None:
    out = io.StringIO()
    status = main(
        ["brownout", "set", "--redis", redis_url, "--factor", "0.5", "--for", duration], out=out
    )
    assert status == 0, out.getvalue()


def test_a_fleet_brownout_keeps_telling_the_twins_real_wait(redis_url: str) -> None:
    limiter = Limiter(SEARCH, redis_url=redis_url, operations={"interval_seconds": 0})
    brownout(redis_url, "10m")
    limiter.ops.tick()  # reads the fleet's brownout (a running loop does it every pass)
    assert limiter.metrics().brownout_factor == 0.5
    answers = [limiter.decide(INFO) for _ in range(8)]
    assert [d.status for d in answers] == [200] * 5 + [503] * 3  # 10/minute x 0.5
    retries = [d.retry_after_seconds for d in answers[5:]]
    # the twin refills 5/minute: a token every 12 s, for every refusal, not 1 s
    assert all(11 <= r <= 12 for r in retries), retries
    for d in answers[5:]:
        assert d.action == "brownout"
        assert dict(d.headers)["RateLimit"].endswith(f";t={d.retry_after_seconds}")
    limiter.close()


def test_a_global_limits_refusals_keep_the_stores_wait(redis_url: str) -> None:
    rules = {"rules": [{"name": "login", "match": {"path": "/login"}, "limit": "3/minute"}]}
    limiter = Limiter(rules, redis_url=redis_url, operations={"interval_seconds": 0})
    info = RequestInfo(path="/login", peer="198.51.100.81")
    answers = [limiter.decide(info) for _ in range(6)]
    assert [d.status for d in answers] == [200] * 3 + [429] * 3
    retries = [d.retry_after_seconds for d in answers[3:]]
    assert all(19 <= r <= 20 for r in retries), retries  # a token every 20 s
    limiter.close()


def test_a_brownouts_retry_after_ends_with_the_brownout(redis_url: str) -> None:
    limiter = Limiter(SEARCH, redis_url=redis_url, operations={"interval_seconds": 0})
    brownout(redis_url, "3s")
    limiter.ops.tick()
    assert limiter.metrics().brownout_factor == 0.5
    answers = [limiter.decide(INFO) for _ in range(6)]
    assert [d.status for d in answers] == [200] * 5 + [503]
    told = answers[-1].retry_after_seconds
    assert 1 <= told <= 3  # the brownout ends within 3 s: not the twin's 12 s
    # A client that waits as told is admitted: the brownout is over (the original
    # limit, 10/minute, has tokens left), even before an operations pass notices.
    time.sleep(told + 0.2)
    assert limiter.decide(INFO).status == 200
    limiter.close()
