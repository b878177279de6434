"""Rate-limiting algorithms (pure: clock injected, no I/O) and the key tables of their state."""

from __future__ import annotations

from ratemw.algorithms.base import TIME_SLACK_SECONDS, RateAlgorithm, State
from ratemw.algorithms.concurrency import ConcurrencyLimit, ConcurrencyState, Slot
from ratemw.algorithms.token_bucket import GCRA, BucketState, GCRAState, TokenBucket
from ratemw.algorithms.windows import FixedWindow, SlidingWindow, WindowState

__all__ = [
    "ALGORITHM_FACTORY",
    "ALGORITHM_NAMES",
    "GCRA",
    "TIME_SLACK_SECONDS",
    "BucketState",
    "ConcurrencyLimit",
    "ConcurrencyState",
    "FixedWindow",
    "GCRAState",
    "RateAlgorithm",
    "SlidingWindow",
    "Slot",
    "State",
    "TokenBucket",
    "WindowState",
    "build_algorithm",
]

#: Names accepted by ``build_algorithm`` (the rules' ``algorithm:`` values).
ALGORITHM_NAMES = frozenset({"token_bucket", "gcra", "fixed_window", "sliding_window"})


def build_algorithm(
    name: str, count: int, period_seconds: float, burst: int | None
) -> RateAlgorithm:
    """Build the algorithm for a rule's ``count`` per ``period_seconds``.

    Buckets refill at ``count / period_seconds`` and hold ``burst`` (default ``count``),
    which is also the quota they report; windows ignore ``burst``. Raises ``ValueError``
    for an unknown name or a non-positive count, period or burst.
    """
    if name == "token_bucket" or name == "gcra":
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        if not period_seconds > 0:
            raise ValueError(f"period_seconds must be positive, not {period_seconds!r}")
        size = count if burst is None else burst
        cls = TokenBucket if name == "token_bucket" else GCRA
        return cls(count / period_seconds, size, period_seconds, size)
    if name == "fixed_window":
        return FixedWindow(count, period_seconds)
    if name == "sliding_window":
        return SlidingWindow(count, period_seconds)
    raise ValueError(f"unknown algorithm {name!r}; expected one of {sorted(ALGORITHM_NAMES)}")


#: Alias of ``build_algorithm``.
ALGORITHM_FACTORY = build_algorithm
