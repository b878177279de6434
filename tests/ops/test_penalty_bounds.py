"""Per-identity operations state is bounded and pruned once its window has passed: a
flood of identities each rejected once leaves nothing behind (the issue: 120,000 of
them kept about 20 MiB for good)."""

from __future__ import annotations

import gc
import ipaddress
import tracemalloc
from typing import Any

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.ops.config import OpsConfig
from ratemw.testing import ManualClock

IDENTITIES = 120_000


def rules(after: str = "5/minute") -> dict[str, Any]:
    return {
        "rules": [
            {"name": "login", "match": {"path": "/login"}, "limit": "1/hour",
             "penalty": {"after": after, "ban": "10m"}},
        ]
    }  # fmt: skip


def reject_each_once(lim: Limiter, count: int, first: int = 0x0A000000) -> None:
    """``count`` addresses, each admitted once and then rejected once."""
    for i in range(count):
        info = RequestInfo(path="/login", peer=str(ipaddress.IPv4Address(first + i)))
        lim.decide(info)
        assert lim.decide(info).status == 429
        if i % 20_000 == 19_999:
            lim.ops.tick()  # a pass between bursts, as the loop would run
    lim.ops.tick()


def test_a_flood_of_identities_stays_within_the_bound_and_is_pruned(clock: ManualClock) -> None:
    bound = 50_000
    lim = Limiter(rules(), clock=clock, max_keys=200_000,
                  operations={"interval_seconds": 0, "max_identities": bound})  # fmt: skip
    reject_each_once(lim, IDENTITIES)
    tracked = lim.ops.tracked()
    assert tracked["penalty_windows"] == bound  # the oldest windows went first
    assert tracked["bans"] == 0 and tracked["unsent"] == 0
    clock.advance(59)
    lim.ops.tick()
    assert lim.ops.tracked()["penalty_windows"] == bound  # the window has not passed
    clock.advance(1)
    lim.ops.tick()
    assert lim.ops.tracked()["penalty_windows"] == 0
    lim.close()


def test_the_bound_defaults_to_max_keys_and_memory_is_given_back(clock: ManualClock) -> None:
    lim = Limiter(rules(), clock=clock, max_keys=30_000, operations={"interval_seconds": 0})
    assert lim.ops.max_identities == 30_000
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        reject_each_once(lim, 40_000)
        assert lim.ops.tracked()["penalty_windows"] == 30_000
        clock.advance(3600)  # every window and bucket has passed
        lim.ops.tick()
        assert lim.ops.tracked()["penalty_windows"] == 0
        gc.collect()
        ops_state = sum(
            stat.size
            for stat in tracemalloc.take_snapshot()
            .filter_traces([tracemalloc.Filter(True, "*ratemw/ops/runtime.py")])
            .statistics("filename")
        )
        # what the operations module still holds: the digest memo (bounded by its own
        # limit) and small per-rule state, not one window per identity
        assert ops_state < 8 * 1024 * 1024, ops_state
        assert tracemalloc.get_traced_memory()[0] - before < 64 * 1024 * 1024
    finally:
        tracemalloc.stop()
        lim.close()


def test_a_penalty_still_bans_within_the_bound(clock: ManualClock) -> None:
    lim = Limiter(rules("3/minute"), clock=clock,
                  operations={"interval_seconds": 0, "max_identities": 10})  # fmt: skip
    offender = RequestInfo(path="/login", peer="198.51.100.66")
    lim.decide(offender)
    for _ in range(3):
        assert lim.decide(offender).action == "reject"
    lim.ops.tick()
    assert lim.decide(offender).action == "ban"
    lim.close()


def test_windows_restart_after_their_period(clock: ManualClock) -> None:
    lim = Limiter(rules("3/minute"), clock=clock, operations={"interval_seconds": 0})
    info = RequestInfo(path="/login", peer="198.51.100.67")
    lim.decide(info)
    for _ in range(2):
        lim.decide(info)
        lim.ops.tick()
        clock.advance(45)  # two rejections, 45 s apart: never 3 within a minute
    assert lim.ops.tracked()["penalty_windows"] == 1
    lim.ops.tick()  # 90 s after it started, the window has passed
    assert lim.ops.tracked()["penalty_windows"] == 0
    assert lim.decide(info).action == "reject"  # counted in a fresh window
    lim.ops.tick()
    assert lim.ops.tracked()["penalty_windows"] == 1
    clock.advance(61)
    lim.ops.tick()
    assert lim.ops.tracked()["penalty_windows"] == 0
    assert lim.decide(info).action == "reject"  # never banned: never 3 in a minute
    lim.close()


def test_max_identities_is_checked() -> None:
    with pytest.raises(ValueError, match="max_identities"):
        OpsConfig(max_identities=0)
