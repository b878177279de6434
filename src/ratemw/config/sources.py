"""Where live rules come from: a file, a Consul or etcd key, or a Redis key plus a channel.

A source only moves bytes. ``read()`` returns the current document (``None`` when
there is none); ``watch(stop)`` yields a :class:`SourceDocument` each time the bytes
change (starting with the current ones) until ``stop`` is set. Parsing, validation
and the swap belong to :mod:`ratemw.config.loader` and :mod:`ratemw.config.holder`.
Optional clients (watchdog, httpx, redis) are imported in constructors.
"""

from __future__ import annotations

from ratemw.config.base import Source, SourceDocument, SourceUnavailable
from ratemw.config.consul import ConsulSource
from ratemw.config.etcd import EtcdSource
from ratemw.config.files import FileSource
from ratemw.config.redis_source import RedisSource

__all__ = [
    "ConsulSource",
    "EtcdSource",
    "FileSource",
    "RedisSource",
    "Source",
    "SourceDocument",
    "SourceUnavailable",
]
