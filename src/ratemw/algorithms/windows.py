"""Fixed and sliding window counters.

Windows are aligned to multiples of ``window_seconds`` of the clock value: window
``k`` is ``[k * window_seconds, (k + 1) * window_seconds)``. Window indexes are kept as
floats (``x // 1.0``) so the hot path never calls ``math.floor``.
"""

from __future__ import annotations

import math

from ratemw.algorithms.base import TIME_SLACK_SECONDS

__all__ = ["FixedWindow", "SlidingWindow", "WindowState"]

_INF = math.inf
_NEG_INF = -math.inf
_SLACK = TIME_SLACK_SECONDS


def _check(limit: int, window_seconds: float) -> None:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit!r}")
    if not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ValueError(f"window_seconds must be positive and finite, not {window_seconds!r}")


class WindowState:
    """Count of calendar window ``window``; ``prev`` is the count of the window before
    it (used by the sliding window only); ``denied_until`` is the deny cache."""

    __slots__ = ("count", "denied_until", "prev", "window")

    def __init__(self, window: float) -> None:
        self.window: float = window
        self.count: int = 0
        self.prev: int = 0
        self.denied_until: float = _NEG_INF

    def __repr__(self) -> str:
        return (
            f"WindowState(window={self.window!r}, count={self.count!r}, prev={self.prev!r}, "
            f"denied_until={self.denied_until!r})"
        )


class FixedWindow:
    """At most ``limit`` units per calendar window of ``window_seconds``.

    Up to ``2 * limit`` may pass in an interval straddling a window boundary. Raises
    ``ValueError`` for a limit below 1 or a non-positive window.
    """

    __slots__ = ("_limit", "_w", "limit", "window_seconds")

    def __init__(self, limit: int, window_seconds: float) -> None:
        _check(limit, window_seconds)
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self._limit = limit
        self._w = float(window_seconds)

    def __repr__(self) -> str:
        return f"FixedWindow(limit={self.limit!r}, window_seconds={self.window_seconds!r})"

    def new_state(self, now: float) -> WindowState:
        """Return an empty window."""
        return WindowState((now / self._w) // 1.0)

    def take(self, state: WindowState, now: float, cost: int) -> float:
        """Count ``cost`` (0.0) or return the wait; see ``RateAlgorithm.take``."""
        denied = state.denied_until
        if now < denied:
            return denied - now
        x = now / self._w
        idx = x // 1.0
        if idx != state.window:
            state.window = idx
            state.count = 0
        count = state.count + cost
        if count <= self._limit:
            state.count = count
            return 0.0
        if cost > self._limit:
            return _INF
        # Window boundaries come from float division: the slack keeps a retry at
        # denied_until from landing a rounding error before the boundary.
        wait = (idx + 1.0 - x) * self._w + _SLACK
        state.denied_until = now + wait
        return wait

    def give(self, state: WindowState, now: float, cost: int) -> None:
        """Uncount ``cost`` if still in the window it was taken in; clear the deny cache."""
        if state.window == (now / self._w) // 1.0:
            count = state.count - cost
            state.count = count if count > 0 else 0
        state.denied_until = _NEG_INF

    def remaining(self, state: WindowState, now: float) -> int:
        """Units left in the current window."""
        if state.window != (now / self._w) // 1.0:
            return self._limit
        left = self._limit - state.count
        return left if left > 0 else 0

    def reset_after(self, state: WindowState, now: float) -> float:
        """Seconds until the current window ends, or 0.0 when nothing is counted."""
        x = now / self._w
        idx = x // 1.0
        if state.window != idx or state.count == 0:
            return 0.0
        return (idx + 1.0 - x) * self._w

    def at_rest(self, state: WindowState, now: float) -> bool:
        """True when the current window has no count and no denial is cached."""
        return state.denied_until <= now and (
            state.count == 0 or state.window != (now / self._w) // 1.0
        )


class SlidingWindow:
    """Sliding window counter: the previous window's count, weighted by the part of it
    still inside a sliding window, plus the current count.

    A request of ``cost`` is admitted when ``prev * (1 - elapsed_fraction) + count +
    cost <= limit``. Bounds: within one calendar window at most ``limit``; in any
    interval of length ``window_seconds`` ending at elapsed fraction ``f`` of a window
    whose previous window counted ``prev``, at most ``limit + prev * f < 2 * limit``.
    A refusal's wait is the exact time (+1 µs) at which the weighted estimate has
    decayed enough, possibly in the next window. Raises ``ValueError`` for a limit
    below 1 or a non-positive window.
    """

    __slots__ = ("_limit", "_w", "limit", "window_seconds")

    def __init__(self, limit: int, window_seconds: float) -> None:
        _check(limit, window_seconds)
        self.limit = limit
        self.window_seconds = float(window_seconds)
        self._limit = limit
        self._w = float(window_seconds)

    def __repr__(self) -> str:
        return f"SlidingWindow(limit={self.limit!r}, window_seconds={self.window_seconds!r})"

    def new_state(self, now: float) -> WindowState:
        """Return empty current and previous windows."""
        return WindowState((now / self._w) // 1.0)

    def take(self, state: WindowState, now: float, cost: int) -> float:
        """Count ``cost`` (0.0) or return the wait; see ``RateAlgorithm.take``."""
        denied = state.denied_until
        if now < denied:
            return denied - now
        x = now / self._w
        idx = x // 1.0
        if idx != state.window:
            # A gap of two windows or more leaves nothing in the weighted previous one.
            state.prev = state.count if idx == state.window + 1.0 else 0
            state.count = 0
            state.window = idx
        count = state.count
        prev = state.prev
        limit = self._limit
        if prev:
            if prev * (1.0 - (x - idx)) + count + cost <= limit:
                state.count = count + cost
                return 0.0
        elif count + cost <= limit:
            state.count = count + cost
            return 0.0
        if cost > limit:
            return _INF
        room = limit - cost - count
        if room >= 0:  # noqa: SIM108 (each branch needs its comment)
            # prev > 0 here: admitted once prev * (1 - f) <= room, later in this window.
            target = idx + 1.0 - room / prev
        else:
            # This window's count alone is too much: wait until it, as next window's
            # prev, has decayed to limit - cost (count > limit - cost >= 0 here).
            target = idx + 2.0 - (limit - cost) / count
        wait = (target - x) * self._w
        wait = (wait if wait > 0.0 else 0.0) + _SLACK
        state.denied_until = now + wait
        return wait

    def give(self, state: WindowState, now: float, cost: int) -> None:
        """Uncount ``cost`` if still in the window it was taken in; clear the deny cache."""
        if state.window == (now / self._w) // 1.0:
            count = state.count - cost
            state.count = count if count > 0 else 0
        state.denied_until = _NEG_INF

    def _estimate(self, state: WindowState, now: float) -> float:
        x = now / self._w
        idx = x // 1.0
        if idx == state.window:
            count, prev = state.count, state.prev
        elif idx == state.window + 1.0:
            count, prev = 0, state.count
        else:
            count, prev = 0, 0
        return prev * (1.0 - (x - idx)) + count

    def remaining(self, state: WindowState, now: float) -> int:
        """Whole units the weighted estimate leaves now."""
        estimate = self._estimate(state, now)
        left = math.floor(self._limit - estimate)
        return left if left > 0 else 0

    def reset_after(self, state: WindowState, now: float) -> float:
        """Seconds until neither window weighs on the estimate."""
        x = now / self._w
        idx = x // 1.0
        if idx == state.window and state.count:
            end = idx + 2.0  # the current count still weighs as next window's prev
        elif (idx == state.window and state.prev) or (idx == state.window + 1.0 and state.count):
            end = idx + 1.0
        else:
            return 0.0
        return (end - x) * self._w

    def at_rest(self, state: WindowState, now: float) -> bool:
        """True when the estimate is zero and no denial is cached."""
        return state.denied_until <= now and self.reset_after(state, now) == 0.0
