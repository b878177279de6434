"""The framework-neutral request that adapters hand to ``Limiter.decide``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["RequestInfo"]


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
