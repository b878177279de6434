"""The limiters alive in this process, for exporters that read them all.

Limiters register themselves here when made; metrics exporters read the registry, so
nothing below the limiter imports it (docs/architecture.md: imports run one way).
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["live_limiters", "register"]

_live: weakref.WeakSet[Any] = weakref.WeakSet()


def register(limiter: Any) -> None:
    """Remember ``limiter`` while it is alive (a weak reference)."""
    _live.add(limiter)


def live_limiters() -> list[Any]:
    """Every limiter of this process not yet garbage-collected or closed."""
    return [limiter for limiter in list(_live) if not limiter._closed]


def all_limiters() -> list[Any]:
    """Every limiter of this process not yet garbage-collected, closed or not."""
    return list(_live)
