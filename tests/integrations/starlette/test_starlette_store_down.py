from __future__ import annotations

import warnings

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratemw_starlette import RateLimitMiddleware
from tests.integrations.store_down import EXPECTED, RULES, dead_redis_url

with warnings.catch_warnings():  # Starlette's TestClient warns when it finds plain httpx
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_starlette_with_redis_down_never_answers_500(path: str) -> None:
    app = Starlette(
        routes=[Route(path, ok)],
        middleware=[Middleware(RateLimitMiddleware, rules=RULES, redis_url=dead_redis_url())],
    )
    with TestClient(app) as client:
        assert [client.get(path).status_code for _ in range(5)] == EXPECTED[path]
