from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
import starlette.exceptions
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

from ratemw import AsyncLimiter, ConfigError, RequestInfo
from ratemw.decision import Decision
from ratemw.testing import ManualClock
from ratemw.types import ASGIApp, Message, Receive, Scope, Send
from ratemw_starlette import RateLimit, RateLimitMiddleware

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it finds httpx.
    # (no such warning class before Starlette 1.x: then there is nothing to silence)
    warnings.simplefilter(
        "ignore",
        getattr(starlette.exceptions, "StarletteDeprecationWarning", PendingDeprecationWarning),
    )
    from starlette.testclient import TestClient

RULES: dict[str, Any] = {
    "version": 1,
    "deny": ["203.0.113.0/24"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "2/minute"},
        {"name": "stream", "match": {"path": "/stream"}, "concurrency": 1},
        {"name": "me", "match": {"path": "/me"}, "identity": "user", "limit": "1/minute"},
        {"name": "items", "match": {"route": "item"}, "limit": "1/minute"},
        {"name": "v1-things", "match": {"route": "v1:things"}, "limit": "1/minute"},
        {"name": "deep", "match": {"path": "/v1/deep"}, "limit": "1/minute"},
        {"name": "ws", "match": {"path": "/ws"}, "limit": "1/minute"},
    ],
}


@pytest.fixture
def limiter(clock: ManualClock) -> AsyncLimiter:
    return AsyncLimiter(RULES, clock=clock)


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def starlette_app(
    limiter: AsyncLimiter, routes: list[BaseRoute] | None = None, **kw: Any
) -> Starlette:
    default = [
        Route("/login", ok, methods=["POST"]),
        Route("/me", ok),
        Route("/items/{id}", ok, name="item"),
        Route("/other", ok),
        Mount(
            "/v1", routes=[Route("/things/{id}", ok, name="things"), Route("/deep", ok)], name="v1"
        ),
    ]
    middleware = [Middleware(RateLimitMiddleware, limiter=limiter, **kw)]
    return Starlette(routes=routes or default, middleware=middleware)


def test_allowed_then_429_with_headers_and_problem_json(
    limiter: AsyncLimiter, clock: ManualClock
) -> None:
    client = TestClient(starlette_app(limiter))
    first = client.post("/login")
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"login";q=2;w=60'
    assert first.headers["ratelimit"].startswith('"login";r=1;')
    client.post("/login")
    res = client.post("/login")
    assert res.status_code == 429
    assert res.headers["retry-after"] == "30"
    assert res.headers["content-type"] == "application/problem+json"
    assert res.json()["violated-policies"] == ["login"]
    clock.advance(30)
    assert client.post("/login").status_code == 200


def from_peer(app: ASGIApp, address: str) -> ASGIApp:
    """``app`` as reached from ``address`` (TestClient's ``client=`` is Starlette 0.38+)."""

    async def served(scope: Scope, receive: Receive, send: Send) -> None:
        await app({**scope, "client": (address, 5000)}, receive, send)

    return served


def test_denylist_403_and_spoofed_forwarded_for(limiter: AsyncLimiter) -> None:
    app = starlette_app(limiter)
    denied = TestClient(from_peer(app, "203.0.113.9")).get("/other")
    assert denied.status_code == 403
    client = TestClient(from_peer(app, "198.51.100.7"))
    statuses = [
        client.post("/login", headers={"X-Forwarded-For": ip}).status_code
        for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3")
    ]
    assert statuses == [200, 200, 429]
    assert client.get("/other", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200


def test_route_names_and_mount(limiter: AsyncLimiter) -> None:
    client = TestClient(starlette_app(limiter))
    assert client.get("/items/1").status_code == 200
    res = client.get("/items/2")  # another path, the same route "item"
    assert res.status_code == 429
    assert res.json()["violated-policies"] == ["items"]
    assert client.get("/v1/things/1").status_code == 200
    assert client.get("/v1/things/2").json()["violated-policies"] == ["v1-things"]
    # Inside a Mount the core still matches the full path.
    assert client.get("/v1/deep").status_code == 200
    assert client.get("/v1/deep").json()["violated-policies"] == ["deep"]


def test_route_names_inside_a_mounted_app(limiter: AsyncLimiter) -> None:
    inner = Starlette(routes=[Route("/items/{id}", ok, name="item")])
    client = TestClient(starlette_app(limiter, routes=[Mount("/sub", app=inner)]))
    assert client.get("/sub/items/1").status_code == 200
    assert client.get("/sub/items/2").status_code == 429


class HeaderAuth(AuthenticationBackend):
    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, SimpleUser] | None:
        name = conn.headers.get("x-user")
        return (AuthCredentials(["authenticated"]), SimpleUser(name)) if name else None


def test_user_identity_comes_from_authentication_middleware(limiter: AsyncLimiter) -> None:
    app = Starlette(
        routes=[Route("/me", ok)],
        middleware=[
            Middleware(AuthenticationMiddleware, backend=HeaderAuth()),
            Middleware(RateLimitMiddleware, limiter=limiter),
        ],
    )
    client = TestClient(app)
    assert client.get("/me", headers={"X-User": "alice"}).status_code == 200
    assert client.get("/me", headers={"X-User": "alice"}).status_code == 429
    assert client.get("/me", headers={"X-User": "bob"}).status_code == 200


def test_on_reject_replaced_by_an_html_page(limiter: AsyncLimiter) -> None:
    def sync_page(request: Request, decision: Decision) -> Response:
        return HTMLResponse(f"<h1>Slow down on {request.url.path}</h1>", status_code=429)

    async def async_page(request: Request, decision: Decision) -> Response:
        return HTMLResponse("<h1>Slow down</h1>", 429, headers={"Retry-After": "999"})

    client = TestClient(starlette_app(limiter, on_reject=sync_page))
    client.post("/login")
    client.post("/login")
    res = client.post("/login")
    assert res.status_code == 429
    assert res.text == "<h1>Slow down on /login</h1>"
    assert res.headers["content-type"].startswith("text/html")
    assert res.headers["retry-after"] == "30"  # added from the decision
    assert res.headers["ratelimit-policy"] == '"login";q=2;w=60'
    res = TestClient(starlette_app(limiter, on_reject=async_page)).post("/login")
    assert res.text == "<h1>Slow down</h1>"
    assert res.headers["retry-after"] == "999"  # the page's own header wins


class BrokenLimiter(AsyncLimiter):
    async def decide(self, info: RequestInfo) -> Decision:
        raise RuntimeError("store exploded")


def test_failing_limiter_gives_200_not_500() -> None:
    client = TestClient(starlette_app(BrokenLimiter(RULES)))
    assert client.post("/login").status_code == 200


def test_exception_in_endpoint_releases_the_slot(limiter: AsyncLimiter) -> None:
    calls: list[int] = []

    async def flaky(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("endpoint broke")
        return PlainTextResponse("ok")

    app = starlette_app(limiter, routes=[Route("/stream", flaky)])
    client = TestClient(app, raise_server_exceptions=False)
    assert client.get("/stream").status_code == 500
    assert client.get("/stream").status_code == 200


def test_websocket_passes_through(limiter: AsyncLimiter) -> None:
    async def echo(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hi")
        await ws.close()

    client = TestClient(starlette_app(limiter, routes=[WebSocketRoute("/ws", echo)]))
    for _ in range(3):
        with client.websocket_connect("/ws") as ws:
            assert ws.receive_text() == "hi"


# --- streaming, disconnect and pathsend, driven over raw ASGI ----------------------


def scope(path: str, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("198.51.100.7", 40000),
        "server": ("testserver", 80),
        "extensions": extensions or {},
    }


class Exchange:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": b""})
        self.chunk = asyncio.Event()

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message.get("body"):
            self.chunk.set()


async def status_of(app: ASGIApp, path: str = "/stream") -> int:
    ex = Exchange()
    await app(scope(path), ex.receive, ex.send)
    return int(ex.sent[0]["status"])


def streaming_app(limiter: AsyncLimiter, gate: asyncio.Event) -> Starlette:
    async def stream(request: Request) -> Response:
        async def chunks() -> Any:
            yield b"first"
            await gate.wait()
            yield b"last"

        return StreamingResponse(chunks())

    return starlette_app(limiter, routes=[Route("/stream", stream)])


def test_streaming_response_holds_its_slot_until_the_last_chunk(limiter: AsyncLimiter) -> None:
    async def main() -> list[int]:
        gate = asyncio.Event()
        app = streaming_app(limiter, gate)
        ex = Exchange()
        task = asyncio.create_task(app(scope("/stream"), ex.receive, ex.send))
        await ex.chunk.wait()  # half consumed
        during = await status_of(app)
        gate.set()
        await task
        assert [m.get("body") for m in ex.sent[1:]] == [b"first", b"last", b""]
        return [during, await status_of(app)]

    assert asyncio.run(main()) == [429, 200]


def test_client_disconnect_releases(limiter: AsyncLimiter) -> None:
    async def main() -> list[int]:
        gate = asyncio.Event()  # never set: only the disconnect ends the stream
        app = streaming_app(limiter, gate)
        ex = Exchange()
        task = asyncio.create_task(app(scope("/stream"), ex.receive, ex.send))
        await ex.chunk.wait()
        during = await status_of(app)
        ex.inbox.put_nowait({"type": "http.disconnect"})
        await task
        gate.set()  # lets the probe's own stream finish
        return [during, await status_of(app)]

    assert asyncio.run(main()) == [429, 200]


def test_file_response_with_pathsend_releases(limiter: AsyncLimiter, tmp_path: Path) -> None:
    page = tmp_path / "page.txt"
    page.write_text("hello")

    async def download(request: Request) -> Response:
        return FileResponse(page)

    app = starlette_app(limiter, routes=[Route("/stream", download)])

    async def main() -> list[str]:
        kinds = []
        for _ in range(2):
            ex = Exchange()
            await app(scope("/stream", {"http.response.pathsend": {}}), ex.receive, ex.send)
            kinds.append(ex.sent[-1]["type"])
        return kinds

    assert asyncio.run(main()) == ["http.response.pathsend"] * 2


# --- construction ----------------------------------------------------------------


def test_limiter_is_built_lazily_from_a_rules_file(tmp_path: Path) -> None:
    rules = tmp_path / "ratelimits.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - name: login\n    match: {path: /login}\n    limit: 1/minute\n"
    )
    app = Starlette(routes=[Route("/login", ok, methods=["POST"])])
    app.add_middleware(RateLimitMiddleware, rules=str(rules))
    client = TestClient(app)
    assert client.post("/login").status_code == 200
    assert client.post("/login").json()["violated-policies"] == ["login"]


def test_bad_rules_fail_on_first_request_not_at_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    match: {path: /x}\n    limit: 0/minute\n")
    app = Starlette(routes=[Route("/x", ok)])
    app.add_middleware(RateLimitMiddleware, rules=str(bad))
    with pytest.raises(ConfigError):
        TestClient(app).get("/x")


def test_missing_starlette_names_the_extra() -> None:
    code = "import sys; sys.modules['starlette'] = None; import ratemw_starlette"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "pip install 'ratemw[starlette]'" in out.stderr


# --- FastAPI --------------------------------------------------------------------------


def fastapi_app(limiter: AsyncLimiter | None, login_limit: RateLimit) -> FastAPI:
    app = FastAPI()
    if limiter is not None:
        app.add_middleware(RateLimitMiddleware, limiter=limiter)

    @app.post("/login", dependencies=[Depends(login_limit)])
    async def login() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/signup", dependencies=[Depends(login_limit)])
    async def signup() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"id": item_id}

    return app


def test_fastapi_middleware_and_route_names(limiter: AsyncLimiter) -> None:
    client = TestClient(fastapi_app(limiter, RateLimit("5/minute")))
    assert client.get("/items/1").json() == {"id": 1}  # FastAPI names the route "item"
    res = client.get("/items/2")
    assert res.status_code == 429
    assert res.json()["violated-policies"] == ["items"]


def test_fastapi_dependency_limits_each_route(clock: ManualClock) -> None:
    base = AsyncLimiter({"version": 1, "rules": []}, clock=clock)
    client = TestClient(fastapi_app(base, RateLimit("2/minute", lease={"size": 1})))
    first = client.post("/login")
    assert first.status_code == 200
    assert first.headers["ratelimit-policy"] == '"login";q=2;w=60'
    client.post("/login")
    res = client.post("/login")
    assert res.status_code == 429
    assert res.headers["retry-after"] == "30"
    assert res.json() == {"detail": "Rate limit exceeded: login."}
    # The same dependency on another route: a bucket of its own.
    assert client.post("/signup").headers["ratelimit-policy"] == '"signup";q=2;w=60'
    clock.advance(30)  # the middleware limiter's clock
    assert client.post("/login").status_code == 200


def test_fastapi_dependency_without_middleware_and_with_a_name() -> None:
    client = TestClient(fastapi_app(None, RateLimit("1/minute", name="auth")))
    assert client.post("/login").status_code == 200
    assert client.post("/signup").headers["ratelimit-policy"] == '"auth-2";q=1;w=60'
    assert client.post("/login").json() == {"detail": "Rate limit exceeded: auth."}


def test_fastapi_dependency_inherits_trusted_proxies(clock: ManualClock) -> None:
    base = AsyncLimiter(
        {"version": 1, "identity": {"trusted_proxies": ["127.0.0.1/32"]}, "rules": []},
        clock=clock,
    )
    client = TestClient(from_peer(fastapi_app(base, RateLimit("1/minute")), "127.0.0.1"))
    for ip in ("192.0.2.1", "192.0.2.2"):
        assert client.post("/login", headers={"X-Forwarded-For": ip}).status_code == 200
    assert client.post("/login", headers={"X-Forwarded-For": "192.0.2.1"}).status_code == 429


def test_fastapi_dependency_survives_a_failing_middleware_limiter() -> None:
    client = TestClient(fastapi_app(BrokenLimiter(RULES), RateLimit("1/minute")))
    # The middleware's limiter fails open; the dependency decides with its own.
    assert [client.post("/login").status_code for _ in range(2)] == [200, 429]
