"""Each adapter puts the decision on the current server span while OpenTelemetry traces
(real requests: WSGI, ASGI, Flask, Starlette; Django in django/test_django_otel.py)."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import httpx
from flask import Flask
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratemw import AsyncLimiter, Limiter
from ratemw.asgi import RateLimitMiddleware as AsgiMiddleware
from ratemw.testing import ManualClock
from ratemw.types import Receive, Scope, Send
from ratemw.wsgi import RateLimitMiddleware as WsgiMiddleware
from ratemw_flask import RateMW
from ratemw_starlette import RateLimitMiddleware as StarletteMiddleware
from tests.integrations.otel_spans import Traced, traced, verdicts

with warnings.catch_warnings():
    # webob still imports the deprecated cgi module on Python 3.11 and 3.12.
    warnings.simplefilter("ignore", DeprecationWarning)
    from webtest import TestApp

__all__ = ["traced"]  # the fixture, for pytest

RULES: dict[str, Any] = {
    "rules": [{"name": "login", "match": {"path": "/login"}, "limit": "2/minute"}]
}
EXPECTED = [("login", "allowed", 200), ("login", "allowed", 200), ("login", "rejected", 429)]


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _get_three_asgi(app: Any) -> list[int]:
    async def go() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(await client.get("/login")).status_code for _ in range(3)]

    return asyncio.run(go())


def test_wsgi(traced: Traced) -> None:
    limiter = Limiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    app = TestApp(traced.wsgi(WsgiMiddleware(wsgi_app, limiter=limiter)))
    assert [app.get("/login", expect_errors=True).status_int for _ in range(3)] == [200, 200, 429]
    assert verdicts(traced.server_spans()) == EXPECTED
    limiter.close()


def test_flask(traced: Traced) -> None:
    flask_app = Flask(__name__)
    flask_app.config["RATEMW_RULES"] = RULES
    RateMW(flask_app, clock=ManualClock())
    flask_app.add_url_rule("/login", "login", lambda: "ok")
    flask_app.wsgi_app = traced.wsgi(flask_app.wsgi_app)  # type: ignore[method-assign]
    client = flask_app.test_client()
    assert [client.get("/login").status_code for _ in range(3)] == [200, 200, 429]
    assert verdicts(traced.server_spans()) == EXPECTED


def test_asgi(traced: Traced) -> None:
    limiter = AsyncLimiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    assert _get_three_asgi(traced.asgi(AsgiMiddleware(asgi_app, limiter=limiter))) == [
        200,
        200,
        429,
    ]
    assert verdicts(traced.server_spans()) == EXPECTED


def test_starlette(traced: Traced) -> None:
    routes = [Route("/login", lambda request: PlainTextResponse("ok"))]
    app = Starlette(routes=routes)
    limiter = AsyncLimiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    app.add_middleware(StarletteMiddleware, limiter=limiter)
    assert _get_three_asgi(traced.asgi(app)) == [200, 200, 429]
    assert verdicts(traced.server_spans()) == EXPECTED


def test_nothing_on_the_span_while_tracing_is_off(traced: Traced) -> None:
    from ratemw.ops import otel

    limiter = Limiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    assert "decide" in vars(limiter)  # traced: a wrapper bound on the instance
    otel.use(None)  # back to the API's no-op provider
    assert "decide" not in vars(limiter)  # the class's decide again: nothing added
    with traced.tracer.start_as_current_span("request", kind=traced_kind()):
        limiter.decide_nowait  # noqa: B018  (the attribute exists either way)
        limiter.decide(_info())
    assert traced.server_spans() == [{}]
    limiter.close()


def traced_kind() -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind.SERVER


def _info() -> Any:
    from ratemw import RequestInfo

    return RequestInfo(method="GET", path="/login", peer="198.51.100.7")
