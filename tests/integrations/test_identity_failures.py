"""A failing user getter or tier resolver, through real requests of each adapter (issue
#16, bug 1): the rules that need the value fall back to the client address, every other
rule limits as usual, the failure is logged once (not per request) and never as "decide
failed"; a configuration that cannot work fails when the app starts."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, BaseUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratemw import AsyncLimiter, Limiter, RequestInfo, errors
from ratemw.asgi import RateLimitMiddleware as ASGIMiddleware
from ratemw.wsgi import RateLimitMiddleware as WSGIMiddleware
from ratemw_flask import RateMW
from ratemw_starlette import RateLimitMiddleware as StarletteMiddleware

with warnings.catch_warnings():  # WebOb imports cgi; Starlette's TestClient warns on httpx
    warnings.simplefilter("ignore")
    import webtest
    from starlette.testclient import TestClient

RULES: dict[str, Any] = {
    "version": 1,
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "2/minute"},
        {"name": "search", "match": {"path": "/search"}, "identity": "user",
         "limit": "2/minute"},
        {"name": "plans", "match": {"path": "/plans"},
         "limit": {"free": "2/minute", "pro": "100/minute"}},
    ],
}  # fmt: skip
PATHS = ("/login", "/search", "/plans")
#: three requests per path from one client: two pass, the third is limited
LIMITED = {path: [200, 200, 429] for path in PATHS}


@pytest.fixture(autouse=True)
def fresh_causes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failures are logged once per cause and process: each test starts with none seen."""
    monkeypatch.setattr(errors, "_causes", set())


def failures(caplog: pytest.LogCaptureFixture, source: str) -> list[str]:
    assert "decide failed" not in caplog.text
    return [r.getMessage() for r in caplog.records if source in r.getMessage()]


def broken_tiers(info: RequestInfo) -> str | None:
    raise ConnectionError("the plans service is down")


def wsgi_ok(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# -- the core middlewares: a tier resolver that raises ----------------------------------


def test_wsgi_a_raising_tier_resolver_disables_no_rule(caplog: pytest.LogCaptureFixture) -> None:
    limiter = Limiter(RULES, tier_resolver=broken_tiers)
    app = webtest.TestApp(WSGIMiddleware(wsgi_ok, limiter=limiter))
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        got = {p: [app.get(p, expect_errors=True).status_int for _ in range(3)] for p in PATHS}
    assert got == LIMITED  # "plans" in the default tier (free): 2/minute
    lines = failures(caplog, "tier resolver")
    assert len(lines) == 1 and "ConnectionError" in lines[0], lines
    limiter.close()


def test_asgi_a_raising_tier_resolver_disables_no_rule(caplog: pytest.LogCaptureFixture) -> None:
    async def run() -> dict[str, list[int]]:
        limiter = AsyncLimiter(RULES, tier_resolver=broken_tiers)
        transport = httpx.ASGITransport(app=ASGIMiddleware(asgi_ok, limiter=limiter))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            got = {p: [(await client.get(p)).status_code for _ in range(3)] for p in PATHS}
        await limiter.aclose()
        return got

    with caplog.at_level(logging.ERROR, logger="ratemw"):
        assert asyncio.run(run()) == LIMITED
    assert len(failures(caplog, "tier resolver")) == 1


def test_core_middlewares_refuse_arguments_that_cannot_work() -> None:
    limiter = Limiter(RULES)
    with pytest.raises(TypeError, match="request_info"):
        WSGIMiddleware(wsgi_ok, limiter=limiter, request_info="not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="on_reject"):
        ASGIMiddleware(asgi_ok, limiter=limiter, on_reject=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="limiter"):
        WSGIMiddleware(wsgi_ok, limiter=RULES)  # type: ignore[arg-type]
    limiter.close()


# -- Flask: the quickstart's current_user getter without a LoginManager -----------------


class _NoLoginManager:
    """What flask-login's ``current_user`` does without ``LoginManager(app)``."""

    def get_id(self) -> str:
        raise AttributeError("'Flask' object has no attribute 'login_manager'")


current_user = _NoLoginManager()


def flask_app(**config: Any) -> Flask:
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = RULES
    app.config.update(config)
    ratemw = RateMW()
    for path in PATHS:
        app.add_url_rule(path, path, lambda: "ok")

    @app.get("/decorated")
    @ratemw.limit("2/minute")
    def decorated() -> str:
        return "ok"

    ratemw.init_app(app)
    return app


def test_flask_a_failing_user_getter_disables_no_rule(caplog: pytest.LogCaptureFixture) -> None:
    app = flask_app(RATEMW_USER_GETTER=lambda: current_user.get_id())
    client = app.test_client()
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        got = {p: [client.get(p).status_code for _ in range(3)] for p in (*PATHS, "/decorated")}
    assert got == {**LIMITED, "/decorated": [200, 200, 429]}
    lines = failures(caplog, "RATEMW_USER_GETTER")
    assert len(lines) == 1 and "AttributeError" in lines[0], lines
    assert "login_manager" not in caplog.text  # no exception message: it may quote data


def test_flask_a_bad_getter_setting_fails_at_start_up() -> None:
    with pytest.raises(RuntimeError, match=r"RATEMW_USER_GETTER.*cannot be imported"):
        flask_app(RATEMW_USER_GETTER="no_such_module.current_user_id")
    with pytest.raises(TypeError, match="RATEMW_REJECT_HANDLER"):
        flask_app(RATEMW_REJECT_HANDLER=42)
    with pytest.raises(RuntimeError, match="RATEMW_TIER_RESOLVER"):
        flask_app(RATEMW_TIER_RESOLVER="ratemw.no_such_resolver")


# -- Starlette: a user object that raises --------------------------------------------------


class _BrokenUser(BaseUser):
    @property
    def is_authenticated(self) -> bool:
        raise RuntimeError("session store unreachable")


class _Backend(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser]:
        return AuthCredentials(["authenticated"]), _BrokenUser()


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def test_starlette_a_raising_user_disables_no_rule(caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(
        routes=[Route(path, ok) for path in PATHS],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=_Backend()),
            Middleware(StarletteMiddleware, rules=RULES, tier_resolver=broken_tiers),
        ],
    )
    with caplog.at_level(logging.ERROR, logger="ratemw"), TestClient(app) as client:
        got = {p: [client.get(p).status_code for _ in range(3)] for p in PATHS}
    assert got == LIMITED
    assert len(failures(caplog, 'scope["user"]')) == 1
    assert len(failures(caplog, "tier resolver")) == 1


def test_starlette_arguments_that_cannot_work_fail_at_start_up() -> None:
    app = Starlette(
        routes=[Route("/login", ok)],
        middleware=[Middleware(StarletteMiddleware, rules=RULES, on_reject="teapot")],  # type: ignore[arg-type]
    )
    with pytest.raises(TypeError, match="on_reject"), TestClient(app):
        pass
