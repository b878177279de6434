"""Type aliases and protocols shared across ratemw."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ratemw.request import RequestInfo

__all__ = ["Clock", "TierResolver"]


class Clock(Protocol):
    """A source of time: ``monotonic()`` for buckets, ``time()`` for headers only."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


#: returns the tier of a request, or ``None`` for the default tier.
TierResolver = Callable[["RequestInfo"], "str | None"]
