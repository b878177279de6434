"""Token bucket and GCRA: the same limit (rate, burst) in two state encodings.

``TokenBucket`` stores tokens and the time they were counted; ``GCRA`` stores one
number, the theoretical arrival time (TAT), as the Redis scripts do (LEASES.md §4).
Both admit at most ``burst + rate * Δ`` units in any interval Δ.
"""

from __future__ import annotations

import math

from ratemw.algorithms.base import TIME_SLACK_SECONDS

__all__ = ["GCRA", "TOKEN_EPSILON", "BucketState", "GCRAState", "TokenBucket"]

_INF = math.inf
_NEG_INF = -math.inf
_SLACK = TIME_SLACK_SECONDS
#: tokens: a refill that lands on ``cost`` up to float error still grants it.
TOKEN_EPSILON = 1e-6


def _check(rate_per_second: float, burst: int) -> None:
    if not (rate_per_second > 0 and math.isfinite(rate_per_second)):
        raise ValueError(f"rate_per_second must be positive and finite, not {rate_per_second!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")


class BucketState:
    """Tokens (float) counted at ``updated_at``; ``denied_until`` is the deny cache."""

    __slots__ = ("denied_until", "tokens", "updated_at")

    def __init__(self, tokens: float, updated_at: float) -> None:
        self.tokens: float = tokens
        self.updated_at: float = updated_at
        self.denied_until: float = _NEG_INF

    def __repr__(self) -> str:
        return (
            f"BucketState(tokens={self.tokens!r}, updated_at={self.updated_at!r}, "
            f"denied_until={self.denied_until!r})"
        )


class TokenBucket:
    """Bucket of ``burst`` tokens refilled at ``rate_per_second``.

    ``window_seconds`` and ``limit`` only feed the headers; they default to the time a
    bucket takes to refill from empty and to ``burst``. Raises ``ValueError`` for a
    non-positive rate or a burst below 1.
    """

    __slots__ = (
        "_burst",
        "_inv_rate",
        "_rate",
        "burst",
        "limit",
        "rate_per_second",
        "window_seconds",
    )

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        window_seconds: float | None = None,
        limit: int | None = None,
    ) -> None:
        _check(rate_per_second, burst)
        self.rate_per_second = float(rate_per_second)
        self.burst = burst
        self.window_seconds = burst / rate_per_second if window_seconds is None else window_seconds
        self.limit = burst if limit is None else limit
        # Floats precomputed so take() does no conversions or divisions.
        self._rate = float(rate_per_second)
        self._inv_rate = 1.0 / rate_per_second
        self._burst = float(burst)

    def __repr__(self) -> str:
        return f"TokenBucket(rate_per_second={self.rate_per_second!r}, burst={self.burst!r})"

    def new_state(self, now: float) -> BucketState:
        """Return a full bucket."""
        return BucketState(self._burst, now)

    def take(self, state: BucketState, now: float, cost: int) -> float:
        """Debit ``cost`` tokens (0.0) or return the wait; see ``RateAlgorithm.take``."""
        denied = state.denied_until
        if now < denied:
            return denied - now + _SLACK
        tokens = state.tokens + (now - state.updated_at) * self._rate
        if tokens > self._burst:
            tokens = self._burst
        if tokens + TOKEN_EPSILON >= cost:
            state.tokens = tokens - cost if tokens > cost else 0.0
            state.updated_at = now
            return 0.0
        if cost > self._burst:
            return _INF
        wait = (cost - tokens) * self._inv_rate
        # The deny cache ends at the exact time; the caller is told a hair later.
        state.denied_until = now + wait
        return wait + _SLACK

    def give(self, state: BucketState, now: float, cost: int) -> None:
        """Refund ``cost`` tokens, never above ``burst``; clear the deny cache."""
        tokens = state.tokens + (now - state.updated_at) * self._rate + cost
        state.tokens = tokens if tokens < self._burst else self._burst
        state.updated_at = now
        state.denied_until = _NEG_INF

    def _tokens(self, state: BucketState, now: float) -> float:
        tokens = state.tokens + (now - state.updated_at) * self._rate
        return tokens if tokens < self._burst else self._burst

    def remaining(self, state: BucketState, now: float) -> int:
        """Whole tokens available now."""
        tokens = self._tokens(state, now)
        return int(tokens) if tokens > 0 else 0

    def reset_after(self, state: BucketState, now: float) -> float:
        """Seconds until the bucket is full."""
        return (self._burst - self._tokens(state, now)) * self._inv_rate

    def at_rest(self, state: BucketState, now: float) -> bool:
        """True when the bucket is full and no denial is cached."""
        return state.denied_until <= now and self._tokens(state, now) >= self._burst


class GCRAState:
    """Theoretical arrival time: the bucket is full when ``tat <= now``."""

    __slots__ = ("denied_until", "tat")

    def __init__(self, tat: float) -> None:
        self.tat: float = tat
        self.denied_until: float = _NEG_INF

    def __repr__(self) -> str:
        return f"GCRAState(tat={self.tat!r}, denied_until={self.denied_until!r})"


class GCRA:
    """Generic cell rate algorithm; admits exactly what ``TokenBucket`` of the same
    ``rate_per_second`` and ``burst`` admits, with a one-float state.

    Each unit pushes the TAT ``1/rate`` seconds forward; a request is admitted when the
    TAT it would leave is at most ``burst/rate`` seconds ahead of ``now``. Parameters as
    for ``TokenBucket``.
    """

    __slots__ = (
        "_burst",
        "_interval",
        "_rate",
        "_tau",
        "burst",
        "limit",
        "rate_per_second",
        "window_seconds",
    )

    def __init__(
        self,
        rate_per_second: float,
        burst: int,
        window_seconds: float | None = None,
        limit: int | None = None,
    ) -> None:
        _check(rate_per_second, burst)
        self.rate_per_second = float(rate_per_second)
        self.burst = burst
        self.window_seconds = burst / rate_per_second if window_seconds is None else window_seconds
        self.limit = burst if limit is None else limit
        self._rate = float(rate_per_second)
        self._interval = 1.0 / rate_per_second  # emission interval T
        # How far the TAT may run ahead of now; burst * interval (not burst / rate) so
        # that a cost of exactly ``burst`` rounds to the same value.
        self._tau = burst * self._interval
        self._burst = float(burst)

    def __repr__(self) -> str:
        return f"GCRA(rate_per_second={self.rate_per_second!r}, burst={self.burst!r})"

    def new_state(self, now: float) -> GCRAState:
        """Return a full bucket (TAT = now)."""
        return GCRAState(now)

    def take(self, state: GCRAState, now: float, cost: int) -> float:
        """Debit ``cost`` units (0.0) or return the wait; see ``RateAlgorithm.take``."""
        denied = state.denied_until
        if now < denied:
            return denied - now + _SLACK
        tat = state.tat
        step = cost * self._interval
        # Clamp the backlog, not the TAT: with tat = now, (now + step) - now can round
        # above step and refuse a full-bucket request of exactly ``burst``.
        ahead = tat - now
        if ahead < 0.0:
            ahead = 0.0
            tat = now
        ahead += step
        if ahead <= self._tau + TOKEN_EPSILON * self._interval:
            state.tat = tat + step
            return 0.0
        if cost > self._burst:
            return _INF
        wait = ahead - self._tau
        state.denied_until = now + wait
        return wait + _SLACK

    def give(self, state: GCRAState, now: float, cost: int) -> None:
        """Refund ``cost`` units, never above ``burst``; clear the deny cache."""
        tat = state.tat - cost * self._interval
        state.tat = tat if tat > now else now
        state.denied_until = _NEG_INF

    def remaining(self, state: GCRAState, now: float) -> int:
        """Whole units available now."""
        ahead = state.tat - now
        if ahead <= 0:
            return self.burst
        tokens = (self._tau - ahead) * self._rate
        return int(tokens) if tokens > 0 else 0

    def reset_after(self, state: GCRAState, now: float) -> float:
        """Seconds until the bucket is full."""
        ahead = state.tat - now
        return ahead if ahead > 0 else 0.0

    def at_rest(self, state: GCRAState, now: float) -> bool:
        """True when the bucket is full and no denial is cached."""
        return state.tat <= now and state.denied_until <= now
