"""Hostile requests through the engine and both framework-neutral middlewares: whatever
the method, path, host, peer and headers, ``decide()`` returns a decision, the
middleware answers (never raises), and no header ratemw emits carries a control
character."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, MutableMapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ratemw import AsyncLimiter, Limiter, RequestInfo
from ratemw.asgi import RateLimitMiddleware as ASGIMiddleware
from ratemw.testing import ManualClock
from ratemw.types import Receive, Scope, Send
from ratemw.wsgi import RateLimitMiddleware
from tests.fuzz import fuzz

RULES: dict[str, Any] = {
    "version": 1,
    "tiers": ["free", "pro"],
    "identity": {"trusted_proxies": ["10.0.0.0/8", "::1/128"], "api_key_header": "X-API-Key"},
    "allow": ["192.0.2.1", "user:ops"],
    "deny": ["203.0.113.0/24", "2001:db8:dead::/48", "header:X-Bad:1"],
    "rules": [
        {"name": "login", "match": {"methods": ["POST"], "path": "/login"}, "limit": "2/minute"},
        {"name": "items", "match": {"path": "/api/items/{id}", "host": "*.example.com"},
         "identity": "api_key", "limit": {"free": "3/minute", "pro": "30/minute"}},
        {"name": "search", "match": {"path": "/search/**"}, "identity": ["ip", "header:X-T"],
         "algorithm": "sliding_window", "limit": "5/second"},
        {"name": "get", "match": {"methods": ["GET"], "path": "/get"}, "limit": "1/hour"},
        {"name": "slots", "match": {"path": "/slow"}, "concurrency": 1},
        {"name": "shadow", "match": {"path": "/api/**"}, "limit": "1/day", "mode": "shadow"},
    ],
}  # fmt: skip

_SEGMENT = st.one_of(
    st.sampled_from(["", ".", "..", "login", "LOGIN", "api", "items", "7", "search", "get",
                     "slow", "login;x=1", "login\n", "login\x00", "%2e", "a%2Fb", "é"]),
    st.text(max_size=8),
)  # fmt: skip
PATHS = st.one_of(
    st.lists(_SEGMENT, max_size=6).map(lambda parts: "/" + "/".join(parts)),
    st.text(max_size=60),
)
METHODS = st.one_of(st.sampled_from(["GET", "HEAD", "POST", "get", "OPTIONS"]), st.text(max_size=8))
HOSTS = st.one_of(
    st.sampled_from(["a.example.com", "A.EXAMPLE.COM.", "a.example.com:8080", "[::1]:80",
                     "example.com", "", "evil.com\r\nX: y"]),
    st.text(max_size=30),
)  # fmt: skip
ADDRESSES = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["10.1.2.3", "::1", "::ffff:203.0.113.9", "unknown", "", "1.2.3.4:5"]),
    st.text(max_size=20),
)
HEADERS = st.dictionaries(
    st.sampled_from(["x-forwarded-for", "forwarded", "x-api-key", "x-t", "x-bad", "cookie",
                     "authorization", "x-ratemw-challenge"]),
    st.one_of(st.lists(ADDRESSES, max_size=4).map(", ".join), st.text(max_size=40)),
    max_size=5,
)  # fmt: skip


def _assert_header_safe(headers: Iterable[tuple[str, str]]) -> None:
    for name, value in headers:
        assert name.isascii() and name.isprintable() and ":" not in name
        assert value.isprintable(), (name, value)


@fuzz
@given(method=METHODS, path=PATHS, host=HOSTS, peer=ADDRESSES, headers=HEADERS,
       tier=st.sampled_from([None, "free", "pro", "gold"]))  # fmt: skip
def test_decide_answers_every_request(
    method: str, path: str, host: str, peer: str, headers: dict[str, str], tier: str | None
) -> None:
    limiter = Limiter(RULES, clock=ManualClock())
    info = RequestInfo(method=method, path=path, host=host, peer=peer, headers=headers, tier=tier)
    for _ in range(3):
        decision = limiter.decide(info)
        assert decision.status in (200, 403, 429, 503)
        _assert_header_safe(decision.headers)
        if not decision.allowed:
            status, rendered, _body = decision.response()
            assert status == decision.status
            _assert_header_safe(rendered)
        decision.release()


def _app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"view"]


async def _asgi_app(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"view"})


@fuzz
@given(method=METHODS, path=PATHS, host=HOSTS, peer=ADDRESSES, headers=HEADERS)
def test_the_middlewares_answer_every_request(
    method: str, path: str, host: str, peer: str, headers: dict[str, str]
) -> None:
    wsgi = RateLimitMiddleware(_app, limiter=Limiter(RULES, clock=ManualClock()))
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "PATH_INFO": path.encode("utf-8", "surrogatepass")
        .decode("latin-1"), "REMOTE_ADDR": peer, "HTTP_HOST": host, "wsgi.url_scheme": "http",
        "QUERY_STRING": "",
        **{"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items()},
    }  # fmt: skip
    seen: list[tuple[str, list[tuple[str, str]]]] = []
    for _ in range(2):

        def start_response(status: str, hs: list[tuple[str, str]], exc: Any = None) -> Any:
            seen.append((status, hs))
            return lambda data: None

        body = wsgi(environ, start_response)
        b"".join(body)
        getattr(body, "close", lambda: None)()
    for _status, hs in seen:
        _assert_header_safe(hs)

    asgi = ASGIMiddleware(_asgi_app, limiter=AsyncLimiter(RULES, clock=ManualClock()))
    scope: dict[str, Any] = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode("utf-8",
        "surrogatepass"), "query_string": b"", "scheme": "http", "client": (peer, 1234),
        "server": ("test", 80), "headers": [(b"host", host.encode("utf-8", "surrogatepass"))]
        + [(k.encode(), v.encode("utf-8", "surrogatepass")) for k, v in headers.items()],
    }  # fmt: skip
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def run() -> None:
        for _ in range(2):
            await asgi(scope, receive, send)

    asyncio.run(run())
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert len(starts) == 2
    for start in starts:
        for name, value in start["headers"]:
            text = value.decode("latin-1")
            assert text.isprintable(), (name, value)
