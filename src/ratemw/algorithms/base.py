"""The interface every rate algorithm implements.

Algorithms are pure: the caller passes the monotonic time ``now`` (float seconds), holds
whatever lock guards the state, and does all I/O. Each algorithm object is immutable
configuration; per-key mutable data lives in a slotted state object it creates.
"""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["TIME_SLACK_SECONDS", "RateAlgorithm", "State"]

#: Added to every wait returned to the caller so that retrying at ``now + wait`` succeeds
#: despite float rounding of ``now + wait`` (1 µs is far above the rounding error of
#: monotonic clock values up to ~1e9 s and far below any Retry-After resolution). The
#: deny cache itself ends at the exact time, so a retry at exactly that time succeeds.
TIME_SLACK_SECONDS = 1e-6


class State(Protocol):
    """Mutable per-key state; every rate state carries the deny cache."""

    denied_until: float


class RateAlgorithm(Protocol):
    """A rate limit over one key's state.

    ``state`` parameters are typed ``Any`` because the caller keeps states of several
    algorithms in one table; an algorithm only ever receives states it created with
    :meth:`new_state`.
    """

    limit: int
    """Quota shown to clients: the rate's count, or the burst for buckets."""
    window_seconds: float
    """Period of the rate (RateLimit-Policy ``w=``)."""

    def new_state(self, now: float) -> State:
        """Return a fresh state: full bucket / empty window."""
        ...

    def take(self, state: Any, now: float, cost: int) -> float:
        """Debit ``cost`` and return 0.0, or return the seconds until it could be granted.

        A refusal leaves the state undebited and sets ``state.denied_until``; while
        ``now < denied_until`` the remaining wait is returned without other work (the
        wait of the refusal that set it, whatever ``cost`` is asked now). Returns
        ``math.inf`` without caching when ``cost`` exceeds the capacity.
        """
        ...

    def give(self, state: Any, now: float, cost: int) -> None:
        """Refund ``cost`` taken earlier (never above full) and clear the deny cache."""
        ...

    def remaining(self, state: Any, now: float) -> int:
        """Whole units that could be taken now (>= 0)."""
        ...

    def reset_after(self, state: Any, now: float) -> float:
        """Seconds until the quota is fully restored (0.0 if it is)."""
        ...

    def at_rest(self, state: Any, now: float) -> bool:
        """True when ``state`` equals ``new_state(now)`` in effect, so it may be evicted."""
        ...
