from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.decision import Decision
from ratemw.request import from_wsgi_environ
from ratemw.testing import ManualClock
from ratemw.wsgi import RateLimitMiddleware

with warnings.catch_warnings():
    # webob still imports the deprecated cgi module on Python 3.11 and 3.12.
    warnings.simplefilter("ignore", DeprecationWarning)
    from webtest import TestApp

PEER = "198.51.100.7"
RULES: dict[str, Any] = {
    "version": 1,
    "deny": ["203.0.113.0/24"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "2/minute"},
        {"name": "stream", "match": {"path": "/stream"}, "concurrency": 1},
        {"name": "boom", "match": {"path": "/boom/**"}, "concurrency": 1},
        {"name": "me", "match": {"path": "/me"}, "identity": "user", "limit": "1/minute"},
    ],
}

Environ = dict[str, Any]
StartResponse = Callable[..., Any]


def hello(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-App", "yes")])
    return [b"hello"]


class Recorder:
    """A start_response that remembers what it was given."""

    def __init__(self) -> None:
        self.status = ""
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status, self.headers = status, headers
        return lambda data: None


def environ(path: str, peer: str = PEER, **extra: Any) -> Environ:
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": peer, **extra}
    env.setdefault("SERVER_NAME", "testserver")
    return env


@pytest.fixture
def limiter(clock: ManualClock) -> Limiter:
    return Limiter(RULES, clock=clock)


def client(app: Any, limiter: Limiter, **options: Any) -> TestApp:
    mw = RateLimitMiddleware(app, limiter=limiter, **options)
    return TestApp(mw, extra_environ={"REMOTE_ADDR": PEER})


def test_allowed_response_keeps_app_headers_and_adds_ratelimit(limiter: Limiter) -> None:
    res = client(hello, limiter).get("/login")
    assert res.status_int == 200
    assert res.body == b"hello"
    assert res.headers["X-App"] == "yes"
    assert res.headers["RateLimit-Policy"] == '"login";q=2;w=60'
    assert res.headers["RateLimit"].startswith('"login";r=1;')
    assert "Retry-After" not in res.headers


def test_unlimited_path_is_untouched(limiter: Limiter) -> None:
    body = [b"x"]

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    rec = Recorder()
    assert RateLimitMiddleware(app, limiter=limiter)(environ("/free"), rec) is body
    assert rec.headers == []


def test_rejection_is_429_problem_json_and_app_never_runs(
    limiter: Limiter, clock: ManualClock
) -> None:
    calls: list[str] = []

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        calls.append(environ["PATH_INFO"])
        return hello(environ, start_response)

    c = client(app, limiter)
    c.get("/login")
    c.get("/login")
    res = c.get("/login", status=429)
    assert calls == ["/login", "/login"]
    assert res.status == "429 Too Many Requests"
    assert res.headers["Retry-After"] == "30"
    assert res.headers["Content-Type"] == "application/problem+json"
    assert res.headers["RateLimit-Policy"] == '"login";q=2;w=60'
    problem = json.loads(res.body)
    assert problem["status"] == 429
    assert problem["violated-policies"] == ["login"]
    assert "login" in problem["detail"]
    clock.advance(30)
    assert c.get("/login").status_int == 200


def test_denylisted_peer_gets_403(limiter: Limiter) -> None:
    res = client(hello, limiter).get(
        "/anything", extra_environ={"REMOTE_ADDR": "203.0.113.9"}, status=403
    )
    assert res.status == "403 Forbidden"
    assert json.loads(res.body)["status"] == 403
    assert "Retry-After" not in res.headers


def test_spoofed_forwarded_for_without_trusted_proxies_changes_nothing(limiter: Limiter) -> None:
    c = client(hello, limiter)
    c.get("/login", headers={"X-Forwarded-For": "192.0.2.1"})
    c.get("/login", headers={"X-Forwarded-For": "192.0.2.2"})
    c.get("/login", headers={"X-Forwarded-For": "192.0.2.3"}, status=429)
    # Nor can a denylisted address be pinned on someone else.
    c.get("/other", headers={"X-Forwarded-For": "203.0.113.9"}, status=200)


def streaming_app(chunks: int, fail_at: int | None = None) -> Callable[..., Iterable[bytes]]:
    def app(environ: Environ, start_response: StartResponse) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        for i in range(chunks):
            if i == fail_at:
                raise RuntimeError("stream broke")
            yield b"chunk%d" % i

    return app


def test_streamed_body_holds_its_slot_until_closed(limiter: Limiter) -> None:
    mw = RateLimitMiddleware(streaming_app(3), limiter=limiter)
    rec = Recorder()
    body = mw(environ("/stream"), rec)
    it = iter(body)
    assert next(it) == b"chunk0"
    assert rec.status == "200 OK"
    # Half consumed: the one slot is taken.
    assert client(streaming_app(1), limiter).get("/stream", status=429).status_int == 429
    assert list(it) == [b"chunk1", b"chunk2"]
    body.close()  # type: ignore[attr-defined]  # PEP 3333: the server closes the body
    assert client(streaming_app(1), limiter).get("/stream").body == b"chunk0"


def test_close_closes_the_app_iterable_and_releases_once(limiter: Limiter) -> None:
    closed: list[bool] = []

    class Body:
        def __iter__(self) -> Iterator[bytes]:
            yield b"a"

        def close(self) -> None:
            closed.append(True)

    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return Body()

    mw = RateLimitMiddleware(app, limiter=limiter)
    first = mw(environ("/stream"), Recorder())
    first.close()  # type: ignore[attr-defined]
    first.close()  # type: ignore[attr-defined]
    assert closed == [True, True]
    # Released exactly once: one new request holds the slot, the next is rejected.
    second = mw(environ("/stream"), Recorder())
    rec = Recorder()
    mw(environ("/stream"), rec)
    assert rec.status.startswith("429")
    second.close()  # type: ignore[attr-defined]


def test_exception_before_returning_releases_the_slot(limiter: Limiter) -> None:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("app broke")

    mw = RateLimitMiddleware(app, limiter=limiter)
    with pytest.raises(RuntimeError, match="app broke"):
        mw(environ("/boom/x"), Recorder())
    assert client(hello, limiter).get("/boom/x").status_int == 200


def test_exception_while_iterating_releases_the_slot(limiter: Limiter) -> None:
    mw = RateLimitMiddleware(streaming_app(3, fail_at=1), limiter=limiter)
    body = mw(environ("/stream"), Recorder())
    it = iter(body)
    assert next(it) == b"chunk0"
    with pytest.raises(RuntimeError, match="stream broke"):
        next(it)
    assert client(hello, limiter).get("/stream").status_int == 200
    body.close()  # type: ignore[attr-defined]  # the server still closes: no second release
    held = mw(environ("/stream"), Recorder())
    rec = Recorder()
    mw(environ("/stream"), rec)
    assert rec.status.startswith("429")
    held.close()  # type: ignore[attr-defined]


def test_custom_on_reject_answers_with_html(limiter: Limiter) -> None:
    def on_reject(
        environ: Environ, start_response: StartResponse, decision: Decision
    ) -> Iterable[bytes]:
        headers = [("Content-Type", "text/html"), *decision.headers]
        start_response("429 Too Many Requests", headers)
        return [b"<h1>Slow down</h1>"]

    c = client(hello, limiter, on_reject=on_reject)
    c.get("/login")
    c.get("/login")
    res = c.get("/login", status=429)
    assert res.content_type == "text/html"
    assert res.body == b"<h1>Slow down</h1>"
    assert res.headers["Retry-After"] == "30"


def test_request_info_hook_supplies_the_user(limiter: Limiter) -> None:
    def info(environ: Environ) -> RequestInfo:
        return from_wsgi_environ(environ, user=environ.get("REMOTE_USER"))

    c = client(hello, limiter, request_info=info)
    c.get("/me", extra_environ={"REMOTE_USER": "alice"})
    c.get("/me", extra_environ={"REMOTE_USER": "alice"}, status=429)
    c.get("/me", extra_environ={"REMOTE_USER": "bob"}, status=200)


class BrokenLimiter(Limiter):
    def decide(self, info: RequestInfo) -> Decision:
        raise RuntimeError(f"store exploded for {info.headers.get('authorization')}")


def test_failing_limiter_lets_the_request_through_and_logs_no_secrets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = client(hello, BrokenLimiter(RULES))
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        res = c.get("/login", headers={"Authorization": "Bearer s3cret"})
    assert res.status_int == 200
    assert res.body == b"hello"
    [record] = caplog.records
    assert "RuntimeError" in record.getMessage()
    assert "s3cret" not in caplog.text
    assert "/login" not in caplog.text


def test_failure_after_deciding_gives_the_slot_back(
    limiter: Limiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Decision) -> list[tuple[str, str]]:
        raise RuntimeError("rendering failed")

    monkeypatch.setattr(Decision, "headers", property(broken))
    assert client(streaming_app(1), limiter).get("/stream").status_int == 200
    monkeypatch.undo()
    held = RateLimitMiddleware(hello, limiter=limiter)(environ("/stream"), Recorder())
    rec = Recorder()
    RateLimitMiddleware(hello, limiter=limiter)(environ("/stream"), rec)
    assert rec.status.startswith("429")  # one slot was free, and only one
    held.close()  # type: ignore[attr-defined]
