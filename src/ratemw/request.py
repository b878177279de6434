"""The framework-neutral request that adapters hand to ``Limiter.decide``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RequestInfo", "from_asgi_scope", "from_wsgi_environ"]


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What the limiter needs to know about one request.

    ``headers`` maps lower-case header names to values (adapters join repeated
    headers with ``", "``). ``peer`` is the address of the TCP peer; the client
    address is derived from it and, through trusted proxies only, from
    ``X-Forwarded-For`` / ``Forwarded``. ``user``, ``tenant``, ``tier`` and
    ``api_key`` are what the framework already knows; ``route`` is the
    framework's route name when it has one. ``claims`` are *verified* JWT claims.
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    scheme: str = "http"
    peer: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    tenant: str | None = None
    tier: str | None = None
    api_key: str | None = None
    route: str | None = None
    claims: Mapping[str, object] | None = None


def _header_dict(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        # Repeated fields are one list (RFC 9110 5.3): X-Forwarded-For hops stay in order.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def from_wsgi_environ(environ: Mapping[str, Any], **known: Any) -> RequestInfo:
    """A :class:`RequestInfo` from a WSGI environ (PEP 3333); never raises on odd input.

    The path is ``SCRIPT_NAME + PATH_INFO``, decoded as UTF-8 (PEP 3333 hands it
    over as latin-1). ``known`` sets ``user``, ``tenant``, ``tier``, ``api_key``,
    ``route`` or ``claims``.
    """
    raw = f"{environ.get('SCRIPT_NAME', '')}{environ.get('PATH_INFO', '')}" or "/"
    path = raw.encode("latin-1", "replace").decode("utf-8", "replace")
    pairs = [
        (key[5:].replace("_", "-"), str(value))
        for key, value in environ.items()
        if key.startswith("HTTP_")
    ]
    host = str(environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))
    return RequestInfo(
        method=str(environ.get("REQUEST_METHOD", "GET")).upper(),
        path=path,
        host=host,
        scheme=str(environ.get("wsgi.url_scheme", "http")),
        peer=str(environ.get("REMOTE_ADDR", "")),
        headers=_header_dict(pairs),
        **known,
    )


def from_asgi_scope(scope: Mapping[str, Any], **known: Any) -> RequestInfo:
    """A :class:`RequestInfo` from an ASGI HTTP scope; never raises on odd input.

    Header bytes are decoded as latin-1, which cannot fail; the path is the
    scope's ``path`` (already decoded by the server; it includes ``root_path``).
    """
    pairs = [
        (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
        for name, value in scope.get("headers", ())
    ]
    headers = _header_dict(pairs)
    client = scope.get("client")
    peer = str(client[0]) if client else ""
    server = scope.get("server")
    host = headers.get("host") or (str(server[0]) if server else "")
    return RequestInfo(
        method=str(scope.get("method", "GET")).upper(),
        path=str(scope.get("path", "/")) or "/",
        host=host,
        scheme=str(scope.get("scheme", "http")),
        peer=peer,
        headers=headers,
        **known,
    )
