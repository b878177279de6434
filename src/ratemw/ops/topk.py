"""Space-Saving heavy hitters: the top identities of a stream in O(k) memory.

Metwally, Agrawal, El Abbadi, "Efficient Computation of Frequent and Top-k Elements in
Data Streams" (ICDT 2005). At most ``k`` items are tracked; an untracked arrival evicts
the item with the smallest count and inherits that count as its over-estimate
(``error``). For every tracked item ``count - error <= true count <= count``, the
counts sum to the stream length ``N``, and every item seen more than ``N / k`` times
is tracked.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

__all__ = ["SpaceSaving"]


class SpaceSaving:
    """Top-k heavy hitters of a stream in O(k) memory.

    ``k`` is the number of counters (at least 1). ``add`` is O(1) for a tracked item
    and amortised O(log k) otherwise. Not thread-safe: callers serialise access (the
    stats thread owns one sketch and ``drain``s it each interval).

    Items under about ``N / k`` share the smallest counters and rank by chance: to
    rank the top 5 of a flat stream (Zipf exponent near 1), use k of 50 or more.
    """

    __slots__ = ("_counts", "_errors", "_heap", "_total", "k")

    def __init__(self, k: int = 20) -> None:
        if k < 1:
            raise ValueError(f"k must be at least 1, not {k!r}")
        self.k: int = k
        self._counts: dict[str, int] = {}
        self._errors: dict[str, int] = {}  # only items that replaced another
        # One (count, item) entry per tracked item. Increments do not touch the heap,
        # so an entry's count is a lower bound of the item's count; eviction refreshes
        # stale entries until the smallest one is exact (each refresh is paid for by
        # an earlier increment, hence the amortised O(log k)).
        self._heap: list[tuple[int, str]] = []
        self._total = 0

    def add(self, item: str, count: int = 1) -> None:
        """Count ``count`` (at least 1) occurrences of ``item``; raises ``ValueError``."""
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count!r}")
        self._total += count
        counts = self._counts
        current = counts.get(item)
        if current is not None:
            counts[item] = current + count
        elif len(counts) < self.k:
            counts[item] = count
            heapq.heappush(self._heap, (count, item))
        else:
            self._replace_min(item, count)

    def _replace_min(self, item: str, count: int) -> None:
        heap = self._heap
        counts = self._counts
        while True:
            low, victim = heap[0]
            actual = counts[victim]
            if actual == low:
                break
            heapq.heapreplace(heap, (actual, victim))
        del counts[victim]
        self._errors.pop(victim, None)
        counts[item] = low + count
        self._errors[item] = low
        heapq.heapreplace(heap, (low + count, item))

    def update(self, items: Iterable[str]) -> None:
        """``add(item)`` for each item."""
        add = self.add
        for item in items:
            add(item)

    def top(self, n: int | None = None) -> list[tuple[str, int, int]]:
        """At most ``n`` (default ``k``) ``(item, count, error)``, by count desc, then item.

        The true count of each item lies in ``[count - error, count]``.
        """
        limit = self.k if n is None else n
        if limit < 0:
            raise ValueError(f"n must not be negative, not {limit!r}")
        errors = self._errors
        rows = [(item, c, errors.get(item, 0)) for item, c in self._counts.items()]
        rows.sort(key=lambda row: (-row[1], row[0]))
        return rows[:limit]

    @property
    def total(self) -> int:
        """Occurrences counted since the last ``clear`` (``N``)."""
        return self._total

    def __len__(self) -> int:
        return len(self._counts)

    def clear(self) -> None:
        """Forget every item."""
        self._counts.clear()
        self._errors.clear()
        self._heap.clear()
        self._total = 0

    def drain(self) -> list[tuple[str, int]]:
        """Every tracked ``(item, count)``, ordered as ``top``, then ``clear()``.

        Meant for shipping per-interval deltas: each interval starts from empty.
        """
        rows = [(item, c) for item, c, _ in self.top(len(self._counts))]
        self.clear()
        return rows

    def __repr__(self) -> str:
        return f"SpaceSaving(k={self.k!r}, tracked={len(self._counts)}, total={self._total})"
