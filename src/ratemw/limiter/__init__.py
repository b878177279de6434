"""The decision stage: ``Limiter`` and ``AsyncLimiter``, the fast paths and the general
plan they run, and the installed rule set they swap as a whole."""

from __future__ import annotations

from ratemw.limiter.core import RulesLike, SystemClock, require_extras
from ratemw.limiter.limiters import AsyncLimiter, Limiter

__all__ = ["AsyncLimiter", "Limiter", "RulesLike", "SystemClock", "require_extras"]
