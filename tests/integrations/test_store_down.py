"""The generic WSGI and ASGI middlewares while Redis is unreachable: never a 500."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import httpx
import pytest

from ratemw import AsyncLimiter, Limiter
from ratemw.asgi import RateLimitMiddleware as ASGIMiddleware
from ratemw.wsgi import RateLimitMiddleware as WSGIMiddleware
from tests.integrations.store_down import EXPECTED, RULES, dead_redis_url

with warnings.catch_warnings():  # WebOb imports cgi, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import webtest


def wsgi_app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_wsgi_middleware_with_redis_down(path: str) -> None:
    limiter = Limiter(RULES, redis_url=dead_redis_url())
    app = webtest.TestApp(WSGIMiddleware(wsgi_app, limiter=limiter))
    statuses = [app.get(path, expect_errors=True).status_int for _ in range(5)]
    assert statuses == EXPECTED[path]
    limiter.close()


async def _asgi_statuses(path: str) -> list[int]:
    limiter = AsyncLimiter(RULES, redis_url=dead_redis_url())
    transport = httpx.ASGITransport(app=ASGIMiddleware(asgi_app, limiter=limiter))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        statuses = [(await client.get(path)).status_code for _ in range(5)]
    await limiter.aclose()
    return statuses


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_asgi_middleware_with_redis_down(path: str) -> None:
    import asyncio

    assert asyncio.run(_asgi_statuses(path)) == EXPECTED[path]
