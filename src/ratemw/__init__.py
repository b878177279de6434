"""ratemw: local-first rate limiting for WSGI and ASGI applications."""

from __future__ import annotations

from ratemw.decision import Decision
from ratemw.errors import ConfigError, MissingDependency, Problem, RatemwError, StoreError
from ratemw.limiter import AsyncLimiter, Limiter, SystemClock
from ratemw.request import RequestInfo
from ratemw.rules.compile import Snapshot, compile_rules
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, parse_ruleset

__all__ = [
    "AsyncLimiter",
    "ConfigError",
    "Decision",
    "Limiter",
    "MissingDependency",
    "Problem",
    "RatemwError",
    "RequestInfo",
    "RuleSet",
    "Snapshot",
    "StoreError",
    "SystemClock",
    "__version__",
    "compile_rules",
    "load_ruleset",
    "parse_ruleset",
]

__version__ = "0.1.0.dev0"
