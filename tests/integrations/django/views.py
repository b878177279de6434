from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from ratemw import Decision, RequestInfo
from ratemw_django import ratelimit


class _User:
    is_authenticated = True

    def __init__(self, pk: str) -> None:
        self.pk = pk


class _Anonymous:
    is_authenticated = False
    pk = None


class _Broken:
    """A user whose lookup fails (a session store or database that is down)."""

    @property
    def is_authenticated(self) -> bool:
        raise ConnectionError("session store unreachable")


class FakeAuthenticationMiddleware:
    """Sets ``request.user`` from an ``X-Test-User`` header (no database needed); the
    user ``!broken`` raises when asked whether it is authenticated."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> Any:
        name = request.headers.get("X-Test-User")
        request.user = _Broken() if name == "!broken" else _User(name) if name else _Anonymous()
        return self.get_response(request)


def login(request: HttpRequest) -> HttpResponse:
    return HttpResponse("welcome")


def search(request: HttpRequest, q: str) -> HttpResponse:
    return HttpResponse(f"results for {q}")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def chunks() -> Iterator[bytes]:
        yield from (b"one ", b"two ", b"three")

    return StreamingHttpResponse(chunks())


async def astream(request: HttpRequest) -> StreamingHttpResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b"one ", b"two ", b"three"):
            yield chunk

    return StreamingHttpResponse(chunks())


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("the view failed")


@ratelimit("1/minute", identity="ip", lease={"size": 1})
def decorated(request: HttpRequest) -> HttpResponse:
    return HttpResponse("decorated")


def named(request: HttpRequest) -> HttpResponse:
    return HttpResponse("named")


def free(request: HttpRequest) -> HttpResponse:
    return HttpResponse("free")


def teapot(request: HttpRequest, decision: Decision) -> HttpResponse:
    return HttpResponse(f"slow down: {','.join(decision.violated)}", status=418)


def tier_for(info: RequestInfo) -> str | None:
    return "pro" if info.user == "vip" else None
