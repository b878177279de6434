"""Helpers for testing applications that use ratemw.

``ManualClock`` drives limiters without sleeping; ``reset`` forgets all
counters; ``disabled`` turns limiting off for a block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratemw.limiter.core import _LimiterCore

__all__ = ["ManualClock", "disabled", "reset"]


class ManualClock:
    """A clock that moves only when told to; pass it as ``Limiter(..., clock=clock)``.

    ``monotonic()`` starts at ``start``; ``time()`` is ``wall_offset`` later, so
    epoch-based headers stay realistic.
    """

    def __init__(self, start: float = 1_000.0, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = wall_offset
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backward); return the new time."""
        if seconds < 0:
            raise ValueError("a monotonic clock cannot go back")
        with self._lock:
            self._now += seconds
            return self._now

    def set(self, now: float) -> None:
        """Jump to ``now`` (not earlier than the current time)."""
        self.advance(now - self._now)


def reset(limiter: _LimiterCore) -> None:
    """Forget every key's state: all buckets full, all windows empty."""
    limiter.reset()


@contextmanager
def disabled(limiter: _LimiterCore) -> Iterator[None]:
    """Allow every request while the block runs."""
    before = limiter.enabled
    limiter.enabled = False
    try:
        yield
    finally:
        limiter.enabled = before
