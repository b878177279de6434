"""Local penalty windows: rejections per (rule, identity) in a fixed window that starts
at the identity's first counted rejection (docs/operations.md, "The penalty box").

Bounded: at most ``bound`` windows per rule, the oldest dropped first past it, and a
window is dropped by :meth:`PenaltyWindows.prune` once its period has passed (it would
restart from zero anyway), so identities rejected once leave nothing behind.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

__all__ = ["PenaltyWindows"]


class PenaltyWindows:
    """rule -> identity digest -> (start, count), each rule's windows in start order."""

    __slots__ = ("_rules", "bound")

    def __init__(self, bound: int) -> None:
        self.bound = bound
        # OrderedDict: popping the oldest is O(1), where a dict would rescan its holes
        self._rules: dict[str, OrderedDict[str, tuple[float, int]]] = {}

    def add(self, rule: str, period: float, digest: str, n: int, wall: float) -> int:
        """Count ``n`` rejections of ``digest`` at ``wall``; the window's count now."""
        windows = self._rules.get(rule)
        if windows is None:
            windows = self._rules[rule] = OrderedDict()
        found = windows.get(digest)
        if found is not None and wall - found[0] < period:
            start, count = found
        else:  # a new window goes last, so the windows stay in order of start
            windows.pop(digest, None)
            start, count = wall, 0
            if len(windows) >= self.bound:
                windows.popitem(last=False)  # the bound: the oldest window goes first
        windows[digest] = (start, count + n)
        return count + n

    def drop(self, rule: str, digest: str) -> None:
        windows = self._rules.get(rule)
        if windows is not None:
            windows.pop(digest, None)

    def prune(self, wall: float, periods: Mapping[str, float]) -> None:
        """Drop the windows that have passed, and those of rules not in ``periods``
        (rule -> its penalty's period: rules that lost their penalty go whole)."""
        for rule in list(self._rules):
            windows = self._rules[rule]
            period = periods.get(rule)
            if period is not None:
                while windows:
                    start, _ = next(iter(windows.values()))
                    if wall - start < period:
                        break
                    windows.popitem(last=False)
            if period is None or not windows:
                del self._rules[rule]

    def __len__(self) -> int:
        return sum(len(w) for w in self._rules.values())
