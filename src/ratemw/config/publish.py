"""Publish a rules document to where live limiters watch it, after validating it.

Targets: ``file:///dir`` (or ``file:///dir/ratelimits.yaml``), ``consul://host:8500/key``
(``consuls://``), ``etcd://host:2379/key`` (``etcds://``) and
``redis://host:6379/0?key=ratemw:rules``. The same loader as the
limiters' runs first: an invalid document is never written anywhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

from ratemw.config.loader import detect_format, load
from ratemw.config.sources import ConsulSource, EtcdSource, RedisSource, SourceUnavailable
from ratemw.errors import ConfigError, Problem
from ratemw.redact import redact, scrub
from ratemw.rules._source import format_for, load_document

__all__ = ["publish", "redact"]

_EXTENSIONS = {"yaml": ".yaml", "toml": ".toml", "json": ".json"}
_FILE_NAME = "ratelimits"


def publish(
    document: bytes, origin: str, target: str, *, fmt: str | None = None,
    timeout_seconds: float = 5.0,
) -> str:  # fmt: skip
    """Validate ``document`` (named ``origin`` in problems), then write it to ``target``.

    ``fmt`` defaults to ``origin``'s extension (or a look at the bytes). A TOML
    document bound for a Consul, etcd or Redis key is stored as JSON, which every reader
    recognises without a file name. Returns the rules version (the digest a
    :class:`~ratemw.config.LiveRules` reports once it is in force). Raises
    :class:`ConfigError` on any error in the document (nothing is written),
    ``ValueError`` for an unusable target and
    :class:`~ratemw.config.SourceUnavailable` when the target cannot be written.
    No message names a credential of ``target`` (:func:`ratemw.redact.redact`).
    """
    fmt = fmt or detect_format(origin, document)
    loaded = load(document, origin, fmt, quiet=True)
    ruleset = loaded.raise_for_errors()
    try:
        return _write(document, origin, fmt, target, ruleset.digest, timeout_seconds)
    except (SourceUnavailable, ValueError) as exc:
        # A client library may echo the URL, or a part of it, in its message.
        text = scrub(str(exc), [target])
        if text == str(exc):
            raise
        if isinstance(exc, SourceUnavailable):
            raise SourceUnavailable(text) from None
        raise ValueError(text) from None


def _write(
    document: bytes, origin: str, fmt: str, target: str, digest: str, timeout_seconds: float
) -> str:
    scheme = urlsplit(target).scheme.lower()
    if scheme == "file":
        _publish_file(Path(unquote(urlsplit(target).path)), document, fmt)
        return digest
    if scheme in ("consul", "consuls", "etcd", "etcds"):
        kind = ConsulSource if scheme.startswith("consul") else EtcdSource
        kv = kind.from_url(target, timeout_seconds=timeout_seconds)
        try:
            payload, version = _for_key(document, origin, fmt, kv.fmt, digest)
            kv.put(payload)
        finally:
            kv.close()
        return version
    if scheme in ("redis", "rediss", "unix"):
        redis_source = RedisSource.from_url(target)
        try:
            payload, version = _for_key(document, origin, fmt, redis_source.fmt, digest)
            redis_source.publish(payload, version)
        finally:
            redis_source.close()
        return version
    raise ValueError(
        f"cannot publish to {redact(target)!r}: use file://, consul://, etcd:// or redis://"
    )


def _for_key(
    document: bytes, origin: str, fmt: str, key_fmt: str | None, digest: str
) -> tuple[bytes, str]:
    """The bytes to store under a key whose format is ``key_fmt`` (``None``: sniffed)."""
    if key_fmt == fmt or (key_fmt is None and detect_format("", document) == fmt):
        return document, digest
    if key_fmt == "toml":
        raise ValueError(f"cannot store a {fmt} document under a key named *.toml")
    # Re-encode as JSON (a YAML reader reads it too); the version is of the parsed
    # data, so it stays the same.
    text = document.decode("utf-8-sig")
    doc, problems = load_document(text, origin, fmt)
    if doc is None:  # pragma: no cover  (validated above)
        raise ConfigError(problems)
    payload = json.dumps(doc.data, indent=2, default=str).encode() + b"\n"
    converted = load(payload, f"{origin} (as JSON)", "json", quiet=True).raise_for_errors()
    return payload, converted.digest


def _publish_file(path: Path, document: bytes, fmt: str) -> None:
    named = format_for(path.name, "")
    if path.is_dir() or not named:
        path = path / f"{_FILE_NAME}{_EXTENSIONS[fmt]}"
    elif named != fmt:
        raise ConfigError(
            [Problem(str(path), 0, 0, f"a {fmt} document cannot go to a .{named} file")]
        )
    directory = path.parent
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    # Write a temporary file beside the target, then rename it over: a watcher sees
    # the old file or the new one, never half of one.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(document)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename durable (POSIX); not possible everywhere
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
