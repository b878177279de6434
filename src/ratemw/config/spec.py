"""Rules given as one string: a path, ``consul://…``, ``etcd://…`` or ``redis://…?key=…``.

``source_for`` turns the string into a source; ``live_limiter`` (and its async
twin) reads the first version, builds the limiter from it and starts watching.
The adapters call these with their ``RULES`` setting.
"""

from __future__ import annotations

import os
import re
from typing import Any

from ratemw.config.holder import LiveRules, Transform
from ratemw.config.loader import load_document
from ratemw.config.sources import (
    ConsulSource,
    EtcdSource,
    FileSource,
    RedisSource,
    Source,
    SourceUnavailable,
)
from ratemw.errors import ConfigError, Problem
from ratemw.limiter import AsyncLimiter, Limiter
from ratemw.redact import redact
from ratemw.rules.model import RuleSet

__all__ = [
    "is_url",
    "live_async_limiter",
    "live_limiter",
    "read_rules",
    "source_for",
]

_CONSUL = ("consul://", "consuls://")
_ETCD = ("etcd://", "etcds://")
_REDIS = ("redis://", "rediss://", "unix://")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(spec: object) -> bool:
    """Whether ``spec`` names a Consul, etcd or Redis source (not a file)."""
    return isinstance(spec, str) and spec.lower().startswith(_CONSUL + _ETCD + _REDIS)


def source_for(spec: str | os.PathLike[str], **options: Any) -> Source:
    """The source ``spec`` names; ``options`` go to its constructor.

    * a path, or ``file:///path`` → :class:`FileSource`;
    * ``consul://host:8500/key`` (``consuls://`` for TLS) → :class:`ConsulSource`;
    * ``etcd://host:2379/key`` (``etcds://`` for TLS) → :class:`EtcdSource`;
    * ``redis://host:6379/0?key=ratemw:rules`` (``rediss://``, ``unix://``) →
      :class:`RedisSource`.

    Raises ``ValueError`` for a URL it cannot use (a Redis URL without ``?key=``).
    """
    if not isinstance(spec, str):
        return FileSource(spec, **options)
    lowered = spec.lower()
    if lowered.startswith(_CONSUL):
        return ConsulSource.from_url(spec, **options)
    if lowered.startswith(_ETCD):
        return EtcdSource.from_url(spec, **options)
    if lowered.startswith(_REDIS):
        return RedisSource.from_url(spec, **options)
    if lowered.startswith("file://"):
        return FileSource(spec[len("file://") :], **options)
    if _SCHEME.match(spec) and not os.path.exists(spec):
        raise ValueError(
            f"unknown rules source {redact(spec)!r}: use a path, consul://, etcd:// or redis://"
        )
    return FileSource(spec, **options)


def read_rules(source: Source) -> RuleSet:
    """The source's current rules; :class:`ConfigError` when absent, unreadable or invalid
    (every problem with its line)."""
    try:
        doc = source.read()
    except SourceUnavailable as exc:
        raise ConfigError([Problem(source.origin, 0, 0, f"cannot read the rules: {exc}")]) from exc
    if doc is None:
        raise ConfigError([Problem(source.origin, 0, 0, "no rules there (missing file or key)")])
    return load_document(doc).raise_for_errors()


def _build(
    limiter_class: type[Limiter] | type[AsyncLimiter],
    spec: str | os.PathLike[str] | Source,
    watch: bool,
    transform: Transform | None,
    source_options: dict[str, Any] | None,
    options: dict[str, Any],
) -> tuple[Any, LiveRules]:
    source = (
        source_for(spec, **(source_options or {})) if isinstance(spec, (str, os.PathLike)) else spec
    )
    try:
        ruleset = read_rules(source)
        final = transform(ruleset) if transform is not None else ruleset
        limiter = limiter_class(final, **options)
    except BaseException:
        source.close()
        raise
    live = LiveRules(limiter, source, ruleset=ruleset, transform=transform, start=watch)
    if not watch:
        source.close()
    return limiter, live


def live_limiter(
    spec: str | os.PathLike[str] | Source,
    *,
    watch: bool = True,
    transform: Transform | None = None,
    source_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[Limiter, LiveRules]:
    """A :class:`Limiter` built from ``spec``'s current rules, and the :class:`LiveRules`
    keeping them up to date (``watch=False``: read once, nothing watched).

    ``options`` go to ``Limiter`` (``redis_url=``, ``clock=``, ...), ``source_options``
    to the source. Raises :class:`ConfigError` when the first version is missing,
    unreadable or invalid. Close the ``LiveRules`` before the limiter.
    """
    limiter, live = _build(Limiter, spec, watch, transform, source_options, options)
    return limiter, live


def live_async_limiter(
    spec: str | os.PathLike[str] | Source,
    *,
    watch: bool = True,
    transform: Transform | None = None,
    source_options: dict[str, Any] | None = None,
    **options: Any,
) -> tuple[AsyncLimiter, LiveRules]:
    """The :class:`AsyncLimiter` twin of :func:`live_limiter`. Call it on the event loop
    that runs ``decide`` (swaps are handed to that loop); the first read blocks."""
    limiter, live = _build(AsyncLimiter, spec, watch, transform, source_options, options)
    return limiter, live
