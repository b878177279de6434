"""Live rules: sources (file, Consul, Redis), one loader, and the holder that swaps.

``live_limiter("ratelimits.yaml")`` (or ``"consul://…"``, ``"redis://…?key=…"``)
returns a limiter and the :class:`LiveRules` keeping it up to date; ``publish``
validates a document and writes it where those watch. See docs/live-rules.md.
Importing this package needs no optional dependency.
"""

from __future__ import annotations

from ratemw.config.diff import RulesDiff, diff_rulesets, format_diff
from ratemw.config.holder import LiveRules
from ratemw.config.loader import LOADS, Loaded, load
from ratemw.config.publish import publish
from ratemw.config.sources import (
    ConsulSource,
    EtcdSource,
    FileSource,
    RedisSource,
    Source,
    SourceDocument,
    SourceUnavailable,
)
from ratemw.config.spec import is_url, live_async_limiter, live_limiter, read_rules, source_for

__all__ = [
    "LOADS",
    "ConsulSource",
    "EtcdSource",
    "FileSource",
    "LiveRules",
    "Loaded",
    "RedisSource",
    "RulesDiff",
    "Source",
    "SourceDocument",
    "SourceUnavailable",
    "diff_rulesets",
    "format_diff",
    "is_url",
    "live_async_limiter",
    "live_limiter",
    "load",
    "publish",
    "read_rules",
    "source_for",
]
