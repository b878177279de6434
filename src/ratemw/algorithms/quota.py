"""When an algorithm makes more quota available to a key: the ``t`` of the ``RateLimit``
field (draft-ietf-httpapi-ratelimit-headers -11), per algorithm. Pure."""

from __future__ import annotations

import math
from typing import Any

from ratemw.algorithms.token_bucket import GCRA, TokenBucket
from ratemw.algorithms.windows import SlidingWindow, WindowState

__all__ = ["next_quota_after"]


def next_quota_after(algo: Any, state: Any, now: float) -> float:
    """Seconds until ``algo`` makes more quota available to the key of ``state``: the
    ``t`` of an admitted request (0.0 when its quota is whole).

    - ``token_bucket``, ``gcra``: until the next whole token;
    - ``fixed_window``: until the window ends;
    - ``sliding_window``: until the weighted count frees one more unit;
    - a global limit: the same, from the store's answer at the key's last call
      (its windows: until the window ends).
    """
    kind = type(algo)
    if kind is SlidingWindow:
        return _sliding_next(algo, state, now)
    if kind is TokenBucket:
        # The arithmetic of the fast path's RateLimit field (ratemw.limiter.fast), so
        # both paths render the same t.
        burst = float(algo.burst)
        tokens = state.tokens + (now - state.updated_at) * algo.rate_per_second
        return _next_unit(burst - tokens, algo.rate_per_second)
    full = float(algo.reset_after(state, now))
    if kind is GCRA or getattr(algo, "windowed", True) is False:
        return _next_unit(full * algo.rate_per_second, algo.rate_per_second)
    return full if full > 0.0 else 0.0


def _next_unit(short: float, rate: float) -> float:
    """Seconds to the next whole token of a bucket ``short`` tokens short of full,
    refilling at ``rate`` a second: the fractional part of ``short`` away, or a whole
    token when ``short`` is whole; 0.0 when it is full."""
    if short <= 0.0:
        return 0.0
    part = short - int(short)
    return (part if part > 1e-9 else 1.0) * (1.0 / rate)


def _sliding_next(algo: SlidingWindow, state: WindowState, now: float) -> float:
    w, limit = algo.window_seconds, algo.limit
    x = now / w
    idx = x // 1.0
    count, prev = 0, 0
    if idx == state.window:
        count, prev = state.count, state.prev
    elif idx == state.window + 1.0:
        prev = state.count
    else:
        return 0.0
    estimate = prev * (1.0 - (x - idx)) + count
    goal = limit - max(0, math.floor(limit - estimate)) - 1  # the estimate to get below
    if estimate <= 0.0 or goal < 0:
        return 0.0
    if count <= goal and prev:
        target = idx + 1.0 - (goal - count) / prev  # the previous window decays enough
    else:
        target = idx + 2.0 - goal / count  # this window's count, as the next one's prev
    return max(0.0, (target - x) * w)
