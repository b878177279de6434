"""etcd's v3 JSON gateway on the wire: URL options, base64 fields, bounded answers, TLS.

What :class:`ratemw.config.etcd.EtcdSource` needs apart from its watch loop. Every
answer is read with a bound (the loader's size bound, in base64, plus room for the
envelope), so a huge value or a hostile server cannot make a worker hold more.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, unquote_to_bytes, urlsplit

from ratemw.redact import redact
from ratemw.rules.notation import parse_duration

__all__ = [
    "DEFAULT_PORT",
    "WatchMessage",
    "answer_limit",
    "b64",
    "credential",
    "error_text",
    "header_value",
    "lines",
    "options_from_url",
    "parse_range",
    "parse_watch",
    "read_bounded",
    "tls_context",
]

DEFAULT_PORT = 2379
MAX_KEY_BYTES = 4096
_MAX_CREDENTIAL = 4096
_ERROR_CHARS = 200
_ENVELOPE = 4096  # header, revisions, field names: far less in practice
_OPTIONS = ("token", "ca", "cert", "cert_key", "insecure", "format", "check_interval")
# In an answer cut short at the bound: the header's revision (the first field) and the
# start of the first value, enough to decode a prefix the loader then refuses.
_REVISION = re.compile(rb'"revision":"(\d{1,19})"')
_VALUE = re.compile(rb'"value":"([A-Za-z0-9+/]*)')
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: object) -> bytes:
    if not isinstance(text, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(text, validate=True)


def answer_limit(max_bytes: int, key: bytes) -> int:
    """Bytes worth reading of one answer carrying ``key`` and a value one byte past the
    loader's bound (so the loader sees, and refuses, a value that is too large)."""
    return 4 * ((max_bytes + 3) // 3) + 4 * ((len(key) + 2) // 3) + _ENVELOPE


def read_bounded(chunks: Iterable[bytes], limit: int) -> tuple[bytes, bool]:
    """At most ``limit`` bytes of ``chunks``, and whether there was more."""
    buf = bytearray()
    for chunk in chunks:
        room = limit - len(buf)
        if len(chunk) > room:
            buf += chunk[:room]
            return bytes(buf), True
        buf += chunk
    return bytes(buf), False


def lines(chunks: Iterable[bytes], limit: int) -> Iterator[tuple[bytes, bool]]:
    """The gateway's newline-delimited stream messages. A message longer than ``limit``
    is yielded once, cut to ``limit`` and flagged ``True``, and the rest of it dropped."""
    buf = bytearray()
    cut = False
    for chunk in chunks:
        start = 0
        while start <= len(chunk):
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if not cut:
                room = limit - len(buf)
                buf += piece[:room]
                if len(piece) > room:
                    cut = True
                    yield bytes(buf), True
            if end < 0:
                break
            if not cut and buf.strip():
                yield bytes(buf), False
            buf.clear()
            cut = False
            start = end + 1


def parse_range(answer: bytes, cut: bool, size: int) -> tuple[int, bytes | None]:
    """``(header revision, value or None)`` of a range answer on one key. An answer
    ``cut`` short gives the first ``size`` bytes of the value. Raises ``ValueError``."""
    if cut:
        found, start = _REVISION.search(answer), _VALUE.search(answer)
        if found is None or start is None:
            raise ValueError(f"an answer of more than {len(answer)} bytes")
        text = start.group(1)
        return int(found.group(1)), base64.b64decode(text[: len(text) - len(text) % 4])[:size]
    body = json.loads(answer)
    revision = int(body["header"]["revision"])
    kvs = body.get("kvs") or []
    if not kvs:
        return revision, None
    return revision, _unb64(kvs[0].get("value", ""))


@dataclass(frozen=True, slots=True)
class WatchMessage:
    """One message of a watch stream, reduced to what the source acts on."""

    created: bool = False
    compacted: int = 0  # the compact revision when the start revision is gone
    canceled: str | None = None  # the reason, when etcd ended the watch otherwise
    value: bytes | None = None  # the latest PUT in the message
    deleted: bool = False  # the latest event is a DELETE


def parse_watch(line: bytes) -> WatchMessage:
    """Raises ``ValueError`` (``KeyError``, ``TypeError``) for an unexpected message."""
    body = json.loads(line)
    if "error" in body:  # the gateway ends a broken stream with an error object
        raise ValueError(printable(json.dumps(body["error"])))
    result: dict[str, Any] = body["result"]
    compacted = int(result.get("compact_revision") or 0)
    canceled = printable(str(result.get("cancel_reason") or "canceled"))
    if compacted or result.get("canceled"):
        return WatchMessage(compacted=compacted, canceled=None if compacted else canceled)
    events = result.get("events") or []
    if not events:
        return WatchMessage(created=bool(result.get("created")))
    last = events[-1]
    if last.get("type") == "DELETE":
        return WatchMessage(deleted=True)
    return WatchMessage(value=_unb64(last["kv"].get("value", "")))


def printable(text: str) -> str:
    """``text`` from a server, bounded and without control characters, for a log line."""
    return "".join(c if c.isprintable() else "?" for c in text[:_ERROR_CHARS])


def error_text(answer: bytes) -> str:
    """The reason in an error answer (``{"error": …}``), bounded."""
    try:
        body = json.loads(answer)
        reason = body.get("error") or body.get("message") if isinstance(body, dict) else None
    except ValueError:
        reason = None
    return printable(str(reason) if reason else answer.decode("utf-8", "replace"))


def credential(value: str, what: str) -> str:
    """``value`` (a user name or password), refused (without being named) when empty,
    longer than 4096 characters or holding control characters."""
    if not 0 < len(value) <= _MAX_CREDENTIAL or not value.isprintable():
        raise ValueError(f"the etcd {what} must be 1 to {_MAX_CREDENTIAL} printable characters")
    return value


def header_value(value: str, what: str) -> str:
    """``value``, refused (without being named) unless it is safe in an HTTP header."""
    if len(value) > _MAX_CREDENTIAL or not _HEADER_SAFE.fullmatch(value):
        raise ValueError(
            f"the etcd {what} must be 1 to {_MAX_CREDENTIAL} printable ASCII characters"
        )
    return value


def tls_context(
    verify: bool | str, cert: str | None, cert_key: str | None
) -> ssl.SSLContext | bool:
    """What httpx's ``verify`` takes: a CA bundle path, a client certificate (and its key,
    when not in the same file) or ``False`` (no verification) make a context."""
    if isinstance(verify, bool) and not cert:
        return verify
    context = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
    if verify is False:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if cert:
        context.load_cert_chain(cert, cert_key)
    return context


def options_from_url(url: str) -> tuple[str, bytes, dict[str, Any]]:
    """``(address, key, constructor options)`` of an ``etcd://`` or ``etcds://`` URL.

    The key is the path after the first ``/``, percent-decoded to bytes (any bytes:
    ``%2F`` or a doubled ``//`` gives a key starting with ``/``).
    """
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or DEFAULT_PORT
    except ValueError:
        raise ValueError(f"not a usable etcd:// URL: {redact(url)!r}") from None
    if parts.scheme.lower() not in ("etcd", "etcds") or not host:
        raise ValueError(f"not an etcd:// URL: {redact(url)!r}")
    key = unquote_to_bytes(parts.path[1:])
    if not key or len(key) > MAX_KEY_BYTES:
        raise ValueError(
            f"{redact(url)!r}: the path names the key (etcd://host:2379/<key>, "
            f"1 to {MAX_KEY_BYTES} bytes)"
        )
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(query) - set(_OPTIONS))
    if unknown:
        names = ", ".join(printable(n) for n in unknown)
        raise ValueError(
            f"{redact(url)!r}: unknown option(s) {names}; known: {', '.join(_OPTIONS)}"
        )
    kwargs: dict[str, Any] = {"scheme": "https" if parts.scheme.lower() == "etcds" else "http"}
    if parts.username is not None or parts.password is not None:
        if parts.password is None:
            raise ValueError(f"{redact(url)!r}: write user:password@, or pass a token as ?token=")
        kwargs["user"], kwargs["password"] = unquote(parts.username or ""), unquote(parts.password)
    if query.get("token"):
        kwargs["token"] = query["token"]
    if query.get("format"):
        kwargs["fmt"] = query["format"]
    if "check_interval" in query:
        kwargs["check_interval_seconds"] = parse_duration(query["check_interval"])
    if query.get("ca"):
        kwargs["verify"] = query["ca"]
    if query.get("insecure", "").lower() in ("1", "true", "yes"):
        kwargs["verify"] = False
    for name in ("cert", "cert_key"):
        if query.get(name):
            kwargs[name] = query[name]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return address, key, kwargs
