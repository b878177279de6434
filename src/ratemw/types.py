"""Type aliases and protocols shared across ratemw."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # PEP 3333 types live only in typeshed (as in werkzeug's proxy_fix.py).
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

    from ratemw.request import RequestInfo
else:
    WSGIEnvironment = dict[str, Any]
    StartResponse = Callable[..., Callable[[bytes], object]]
    WSGIApplication = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]

__all__ = [
    "ASGIApp",
    "Clock",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "StartResponse",
    "TierResolver",
    "WSGIApplication",
    "WSGIEnvironment",
]


class Clock(Protocol):
    """A source of time: ``monotonic()`` for buckets, ``time()`` for headers only."""

    def monotonic(self) -> float: ...

    def time(self) -> float: ...


#: returns the tier of a request, or ``None`` for the default tier.
TierResolver = Callable[["RequestInfo"], "str | None"]

# ASGI 3 (https://asgi.readthedocs.io/en/latest/specs/main.html), as in starlette/types.py.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
