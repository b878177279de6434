from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from ratemw import AsyncLimiter, RequestInfo
from ratemw.asgi import RateLimitMiddleware
from ratemw.decision import Decision
from ratemw.request import from_asgi_scope
from ratemw.testing import ManualClock
from ratemw.types import ASGIApp, Message, Receive, Scope, Send

PEER = "198.51.100.7"
RULES: dict[str, Any] = {
    "version": 1,
    "deny": ["203.0.113.0/24"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "2/minute"},
        {"name": "slot", "match": {"path": "/slot/**"}, "concurrency": 1},
        {"name": "me", "match": {"path": "/me"}, "identity": "user", "limit": "1/minute"},
    ],
}


@pytest.fixture
def limiter(clock: ManualClock) -> AsyncLimiter:
    return AsyncLimiter(RULES, clock=clock)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    headers = [(b"content-type", b"text/plain"), (b"x-app", b"yes")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"hello"})


def http_scope(path: str, peer: str = PEER, headers: list[tuple[bytes, bytes]] | None = None):
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers or [(b"host", b"testserver")],
        "client": (peer, 40000),
        "server": ("testserver", 80),
        "extensions": {},
    }


class Exchange:
    """One request driven by hand: what the app sent, and a receive we control."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.inbox: asyncio.Queue[Message] = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})

    async def receive(self) -> Message:
        return await self.inbox.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode().lower(): v.decode() for k, v in self.sent[0]["headers"]}


async def call(app: ASGIApp, path: str, peer: str = PEER) -> Exchange:
    ex = Exchange()
    await app(http_scope(path, peer), ex.receive, ex.send)
    return ex


def client(app: ASGIApp) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(PEER, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def test_allowed_response_gets_ratelimit_headers(limiter: AsyncLimiter) -> None:
    async def main() -> httpx.Response:
        async with client(RateLimitMiddleware(hello, limiter=limiter)) as c:
            return await c.get("/login")

    res = asyncio.run(main())
    assert res.status_code == 200
    assert res.text == "hello"
    assert res.headers["x-app"] == "yes"
    assert res.headers["ratelimit-policy"] == '"login";q=2;w=60'
    assert res.headers["ratelimit"].startswith('"login";r=1;')


def test_rejection_is_429_problem_json_and_app_never_runs(
    limiter: AsyncLimiter, clock: ManualClock
) -> None:
    calls: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        calls.append(scope["path"])
        await hello(scope, receive, send)

    async def main() -> list[httpx.Response]:
        async with client(RateLimitMiddleware(app, limiter=limiter)) as c:
            out = [await c.get("/login") for _ in range(3)]
            clock.advance(30)
            return [*out, await c.get("/login")]

    responses = asyncio.run(main())
    assert [r.status_code for r in responses] == [200, 200, 429, 200]
    assert calls == ["/login"] * 3
    res = responses[2]
    assert res.headers["retry-after"] == "30"
    assert res.headers["content-type"] == "application/problem+json"
    assert res.headers["ratelimit-policy"] == '"login";q=2;w=60'
    problem = res.json()
    assert problem["status"] == 429
    assert problem["violated-policies"] == ["login"]


def test_denylist_is_403_and_spoofed_forwarded_for_changes_nothing(
    limiter: AsyncLimiter,
) -> None:
    mw = RateLimitMiddleware(hello, limiter=limiter)

    async def main() -> list[int]:
        denied = await call(mw, "/", peer="203.0.113.9")
        statuses = [denied.status]
        async with client(mw) as c:
            for spoof in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "203.0.113.9"):
                res = await c.get("/login", headers={"X-Forwarded-For": spoof})
                statuses.append(res.status_code)
        return statuses

    assert asyncio.run(main()) == [403, 200, 200, 429, 429]


def test_non_http_scopes_pass_through_untouched(limiter: AsyncLimiter) -> None:
    seen: list[tuple[Scope, Receive, Send]] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append((scope, receive, send))

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        pass

    mw = RateLimitMiddleware(app, limiter=limiter)
    for scope in ({"type": "lifespan"}, {**http_scope("/login"), "type": "websocket"}):
        asyncio.run(mw(scope, receive, send))
        assert seen.pop() == (scope, receive, send)


# --- concurrency slots: held until the response is complete -----------------------


class Gate:
    """An app whose steps wait for the test: ``await gate.open(n)`` lets step n run.

    After its last step the app still waits for ``finish`` before returning.
    """

    def __init__(self, steps: list[Callable[[Receive, Send], Awaitable[None]]]) -> None:
        self.steps = steps
        self.go = [asyncio.Event() for _ in steps]
        self.done = [asyncio.Event() for _ in steps]
        self.finish = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for step, go, done in zip(self.steps, self.go, self.done, strict=True):
            await go.wait()
            await step(receive, send)
            done.set()
        await self.finish.wait()

    async def open(self, n: int) -> None:
        self.go[n].set()
        await self.done[n].wait()


def start(trailers: bool = False) -> Callable[[Receive, Send], Awaitable[None]]:
    async def step(receive: Receive, send: Send) -> None:
        message = {"type": "http.response.start", "status": 200, "headers": []}
        if trailers:
            message["trailers"] = True
        await send(message)

    return step


def body(more: bool) -> Callable[[Receive, Send], Awaitable[None]]:
    async def step(receive: Receive, send: Send) -> None:
        await send({"type": "http.response.body", "body": b"x", "more_body": more})

    return step


def message(**msg: Any) -> Callable[[Receive, Send], Awaitable[None]]:
    async def step(receive: Receive, send: Send) -> None:
        await send(msg)

    return step


async def admitted(limiter: AsyncLimiter, path: str = "/slot/a") -> bool:
    """Would another request on the slot be let in right now?"""
    return (await call(RateLimitMiddleware(hello, limiter=limiter), path)).status == 200


async def run_held(limiter: AsyncLimiter, gate: Gate) -> list[bool]:
    """Open the gate's steps one by one, probing the slot after each."""
    mw = RateLimitMiddleware(gate, limiter=limiter)
    ex = Exchange()
    task = asyncio.create_task(mw(http_scope("/slot/a"), ex.receive, ex.send))
    probes = []
    for n in range(len(gate.steps)):
        await gate.open(n)
        probes.append(await admitted(limiter))  # the app has not returned yet
    gate.finish.set()
    await task
    return probes


def test_streamed_body_holds_its_slot_until_the_last_chunk(limiter: AsyncLimiter) -> None:
    async def main() -> list[bool]:
        gate = Gate([start(), body(more=True), body(more=True), body(more=False)])
        return await run_held(limiter, gate)

    assert asyncio.run(main()) == [False, False, False, True]


def test_trailers_release_after_the_last_trailers_message(limiter: AsyncLimiter) -> None:
    async def main() -> list[bool]:
        gate = Gate(
            [
                start(trailers=True),
                body(more=False),
                message(type="http.response.trailers", headers=[], more_trailers=True),
                message(type="http.response.trailers", headers=[(b"x-sum", b"1")]),
            ]
        )
        return await run_held(limiter, gate)

    assert asyncio.run(main()) == [False, False, False, True]


def test_pathsend_releases(limiter: AsyncLimiter) -> None:
    async def main() -> list[bool]:
        gate = Gate([start(), message(type="http.response.pathsend", path="/etc/hosts")])
        return await run_held(limiter, gate)

    assert asyncio.run(main()) == [False, True]


def test_client_disconnect_releases(limiter: AsyncLimiter) -> None:
    async def main() -> tuple[bool, bool]:
        started, heard, finish = asyncio.Event(), asyncio.Event(), asyncio.Event()

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            started.set()
            await receive()  # the request body
            assert (await receive())["type"] == "http.disconnect"
            heard.set()
            await finish.wait()

        ex = Exchange()
        mw = RateLimitMiddleware(app, limiter=limiter)
        task = asyncio.create_task(mw(http_scope("/slot/a"), ex.receive, ex.send))
        await started.wait()
        before = await admitted(limiter)
        ex.inbox.put_nowait({"type": "http.disconnect"})
        await heard.wait()
        after = await admitted(limiter)
        finish.set()
        await task
        return before, after

    assert asyncio.run(main()) == (False, True)


def test_exception_and_cancellation_release(limiter: AsyncLimiter) -> None:
    async def broken(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("app broke")

    async def main() -> list[bool]:
        mw = RateLimitMiddleware(broken, limiter=limiter)
        with pytest.raises(RuntimeError, match="app broke"):
            await call(mw, "/slot/a")
        results = [await admitted(limiter)]
        gate = Gate([start()])
        task = asyncio.create_task(call(RateLimitMiddleware(gate, limiter=limiter), "/slot/a"))
        await gate.open(0)
        results.append(await admitted(limiter))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        results.append(await admitted(limiter))
        return results

    assert asyncio.run(main()) == [True, False, True]


def test_release_happens_exactly_once(limiter: AsyncLimiter) -> None:
    # Final body, then disconnect, then the app returns: three release points, one release.
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await start()(receive, send)
        await body(more=False)(receive, send)
        await receive()
        await receive()

    async def main() -> list[int]:
        ex = Exchange()
        ex.inbox.put_nowait({"type": "http.disconnect"})
        await RateLimitMiddleware(app, limiter=limiter)(http_scope("/slot/a"), ex.receive, ex.send)
        gate = Gate([start()])
        task = asyncio.create_task(call(RateLimitMiddleware(gate, limiter=limiter), "/slot/a"))
        await gate.open(0)
        # A second release would have freed the slot the gate's request holds.
        statuses = [(await call(RateLimitMiddleware(hello, limiter=limiter), "/slot/a")).status]
        gate.finish.set()
        await task
        return statuses

    assert asyncio.run(main()) == [429]


# --- hooks and failures ---------------------------------------------------------------


def test_custom_on_reject_and_request_info(limiter: AsyncLimiter) -> None:
    async def on_reject(scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        headers = [(b"content-type", b"text/html")]
        headers += [(k.encode(), v.encode()) for k, v in decision.headers]
        await send({"type": "http.response.start", "status": 429, "headers": headers})
        await send({"type": "http.response.body", "body": b"<h1>Slow down</h1>"})

    def info(scope: Scope) -> RequestInfo:
        return from_asgi_scope(scope, user="alice")

    mw = RateLimitMiddleware(hello, limiter=limiter, request_info=info, on_reject=on_reject)

    async def main() -> list[Exchange]:
        return [await call(mw, "/me"), await call(mw, "/me")]

    first, second = asyncio.run(main())
    assert first.status == 200
    assert second.status == 429
    assert second.headers["content-type"] == "text/html"
    assert second.headers["retry-after"] == "60"
    assert second.sent[1]["body"] == b"<h1>Slow down</h1>"


class BrokenLimiter(AsyncLimiter):
    async def decide(self, info: RequestInfo) -> Decision:
        raise RuntimeError(f"store exploded for {info.headers.get('authorization')}")


def test_failing_limiter_lets_the_request_through(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> httpx.Response:
        async with client(RateLimitMiddleware(hello, limiter=BrokenLimiter(RULES))) as c:
            return await c.get("/login", headers={"Authorization": "Bearer s3cret"})

    with caplog.at_level(logging.ERROR, logger="ratemw"):
        res = asyncio.run(main())
    assert res.status_code == 200
    assert res.text == "hello"
    assert "RuntimeError" in caplog.text
    assert "s3cret" not in caplog.text


def test_problem_body_is_valid_json_with_length(limiter: AsyncLimiter) -> None:
    async def main() -> Exchange:
        await call(RateLimitMiddleware(hello, limiter=limiter), "/login")
        await call(RateLimitMiddleware(hello, limiter=limiter), "/login")
        return await call(RateLimitMiddleware(hello, limiter=limiter), "/login")

    ex = asyncio.run(main())
    body = ex.sent[1]["body"]
    assert ex.headers["content-length"] == str(len(body))
    assert json.loads(body)["title"] == "Too Many Requests"
    assert ex.sent[1].get("more_body", False) is False


def test_failure_after_deciding_gives_the_slot_back(
    limiter: AsyncLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Decision) -> list[tuple[str, str]]:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(Decision, "headers", property(broken))
    assert asyncio.run(call(RateLimitMiddleware(hello, limiter=limiter), "/slot/a")).status == 200
    monkeypatch.undo()
    assert asyncio.run(admitted(limiter))
