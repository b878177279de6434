"""``t`` of the ``RateLimit`` field (issue #16, bug 2; docs/rules.md, "Responses"): the
seconds until the policy makes more quota available (draft -11), and on a refusal the
refusing policy's wait, which is the ``Retry-After``; never ``t=0`` on a refusal, with or
without a reachable Redis, through every adapter."""

from __future__ import annotations

import asyncio
import random
import re
import warnings
from collections.abc import Iterable
from typing import Any

import httpx
import pytest
from flask import Flask
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from ratemw import AsyncLimiter, Decision, Limiter, RequestInfo
from ratemw.asgi import RateLimitMiddleware as ASGIMiddleware
from ratemw.testing import ManualClock
from ratemw.wsgi import RateLimitMiddleware as WSGIMiddleware
from ratemw_flask import RateMW
from ratemw_starlette import RateLimitMiddleware as StarletteMiddleware
from tests.integrations.store_down import dead_redis_url

with warnings.catch_warnings():  # WebOb imports cgi; Starlette's TestClient warns on httpx
    warnings.simplefilter("ignore")
    import webtest
    from starlette.testclient import TestClient

FIELD = re.compile(r'"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)')
LOGIN = {"name": "login", "match": {"path": "/login"}, "limit": "5/minute"}


def rules(*rule: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "rules": list(rule)}


def fields(decision: Decision) -> dict[str, tuple[int, int]]:
    """name -> (r, t) of the decision's RateLimit field."""
    value = dict(decision.headers).get("RateLimit", "")
    return {m["name"]: (int(m["r"]), int(m["t"])) for m in FIELD.finditer(value)}


def req(path: str = "/login") -> RequestInfo:
    return RequestInfo(path=path, peer="198.51.100.7")


# -- what t means, per algorithm -----------------------------------------------------------


def test_token_bucket_t_is_the_next_token_and_the_wait_on_a_refusal(clock: ManualClock) -> None:
    limiter = Limiter(rules(LOGIN), clock=clock)
    seen = [fields(limiter.decide(req()))["login"] for _ in range(5)]
    assert seen == [(4, 12), (3, 12), (2, 12), (1, 12), (0, 12)]
    refused = limiter.decide(req())
    assert refused.status == 429
    assert fields(refused)["login"] == (0, 12)  # the docs' example: t=12, not 60
    assert dict(refused.headers)["Retry-After"] == "12"
    clock.advance(5)
    refused = limiter.decide(req())
    assert fields(refused)["login"] == (0, 7) and refused.retry_after_seconds == 7
    clock.advance(7)
    assert limiter.decide(req()).allowed


def test_a_costly_request_waits_for_its_cost_and_t_says_so(clock: ManualClock) -> None:
    rule = {"name": "reports", "match": {"path": "/r"}, "limit": "10/minute", "cost": 3}
    limiter = Limiter(rules(rule), clock=clock)
    for _ in range(3):
        assert limiter.decide(req("/r")).allowed  # 9 of 10 tokens
    refused = limiter.decide(req("/r"))
    # one token left, three needed: 2 tokens at 6 s each, though the next comes in 6 s
    assert refused.retry_after_seconds == 12
    assert fields(refused)["reports"] == (1, 12)


def test_fixed_window_t_is_the_window_end(clock: ManualClock) -> None:
    rule = {**LOGIN, "algorithm": "fixed_window", "limit": "2/minute"}
    limiter = Limiter(rules(rule), clock=clock)
    first = limiter.decide(req())
    r, t = fields(first)["login"]
    assert r == 1 and 0 < t <= 60
    limiter.decide(req())
    refused = limiter.decide(req())
    assert fields(refused)["login"] == (0, refused.retry_after_seconds)
    assert abs(refused.retry_after_seconds - t) <= 1


@pytest.mark.parametrize("algorithm", ["token_bucket", "gcra", "fixed_window", "sliding_window"])
def test_t_is_honest_for_every_algorithm(clock: ManualClock, algorithm: str) -> None:
    """Admitted with r < q: after t seconds there is more quota. Refused: t is the
    Retry-After, at least 1, and after it the request passes."""
    rule = {**LOGIN, "algorithm": algorithm, "limit": "4/10 seconds"}
    quota = 4
    rng = random.Random(f"t-{algorithm}")
    for _ in range(60):
        limiter = Limiter(rules(rule), clock=clock)
        for _ in range(rng.randrange(1, 9)):  # some history
            limiter.decide(req())
            clock.advance(rng.choice([0.0, 0.3, 1.7, 2.5]))
        d = limiter.decide(req())
        r, t = fields(d)["login"]
        if d.allowed:
            if r < quota:
                assert t >= 1, (algorithm, r, t)
                clock.advance(t + 0.01)  # a client's retry comes a hair after t
                after = limiter.decide(req())
                assert after.allowed and fields(after)["login"][0] >= r, (algorithm, r, t)
        else:
            assert t == d.retry_after_seconds >= 1, (algorithm, r, t)
            clock.advance(t + 0.01)
            assert limiter.decide(req()).allowed, (algorithm, t)
        limiter.close()
        clock.advance(100)


def test_a_refusal_shows_the_refusing_policys_wait_beside_the_others(clock: ManualClock) -> None:
    wide = {"name": "wide", "match": {"path": "/login"}, "limit": "100/hour", "identity": "global"}
    tight = {"name": "tight", "match": {"path": "/login"}, "limit": "1/minute"}
    limiter = Limiter(rules(wide, tight), clock=clock)
    assert limiter.decide(req()).allowed
    clock.advance(20)
    refused = limiter.decide(req())
    got = fields(refused)
    assert got["tight"] == (0, 40) == (0, refused.retry_after_seconds)
    r, t = got["wide"]
    assert r == 99 and t >= 1  # not refusing: its own next token


# -- through the adapters ----------------------------------------------------------------


def wsgi_ok(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


async def asgi_ok(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def starlette_ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def check_login(answers: list[tuple[int, dict[str, str]]]) -> None:
    """Five logins pass, the sixth is refused with t = Retry-After = 12."""
    assert [status for status, _ in answers] == [200] * 5 + [429]
    headers = {k.lower(): v for k, v in answers[-1][1].items()}
    assert headers["ratelimit"] == '"login";r=0;t=12'
    assert headers["retry-after"] == "12"


def test_wsgi_refusal_t_equals_retry_after(clock: ManualClock) -> None:
    app = webtest.TestApp(WSGIMiddleware(wsgi_ok, limiter=Limiter(rules(LOGIN), clock=clock)))
    answers = []
    for _ in range(6):
        res = app.get("/login", expect_errors=True)
        answers.append((res.status_int, dict(res.headers)))
    check_login(answers)


def test_asgi_refusal_t_equals_retry_after(clock: ManualClock) -> None:
    async def run() -> list[tuple[int, dict[str, str]]]:
        limiter = AsyncLimiter(rules(LOGIN), clock=clock)
        transport = httpx.ASGITransport(app=ASGIMiddleware(asgi_ok, limiter=limiter))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [(r.status_code, dict(r.headers)) for r in [await client.get("/login")
                                                                for _ in range(6)]]  # fmt: skip

    check_login(asyncio.run(run()))


def test_flask_refusal_t_equals_retry_after(clock: ManualClock) -> None:
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = rules(LOGIN)
    RateMW(app, clock=clock)
    app.add_url_rule("/login", "login", lambda: "ok")
    client = app.test_client()
    check_login([(r.status_code, dict(r.headers)) for r in [client.get("/login")
                                                             for _ in range(6)]])  # fmt: skip


def test_starlette_refusal_t_equals_retry_after(clock: ManualClock) -> None:
    limiter = AsyncLimiter(rules(LOGIN), clock=clock)
    app = Starlette(
        routes=[Route("/login", starlette_ok)],
        middleware=[Middleware(StarletteMiddleware, limiter=limiter)],
    )
    with TestClient(app) as client:
        check_login([(r.status_code, dict(r.headers)) for r in [client.get("/login")
                                                                 for _ in range(6)]])  # fmt: skip
    asyncio.run(limiter.aclose())  # a limiter left open is exported by every later scrape


# -- Redis unreachable: still no t=0 on a refusal ------------------------------------------

DOWN = rules(
    {"name": "local", "match": {"path": "/local"}, "limit": "3/minute"},
    {"name": "closed", "match": {"path": "/closed"}, "limit": "3/minute",
     "on_store_error": "closed"},
)  # fmt: skip


def refusal_fields_are_honest(status: int, headers: dict[str, str]) -> None:
    headers = {k.lower(): v for k, v in headers.items()}
    retry = int(headers["retry-after"])
    assert retry >= 1
    for match in FIELD.finditer(headers.get("ratelimit", "")):
        assert int(match["t"]) == retry, headers  # the refusing policy: its wait


def test_wsgi_store_down_refusals_never_say_t_0() -> None:
    limiter = Limiter(DOWN, redis_url=dead_redis_url())
    app = webtest.TestApp(WSGIMiddleware(wsgi_ok, limiter=limiter))
    for path, refused in (("/local", 429), ("/closed", 503)):
        answers = [app.get(path, expect_errors=True) for _ in range(5)]
        assert answers[-1].status_int == refused
        for res in answers:
            if res.status_int >= 400:
                refusal_fields_are_honest(res.status_int, dict(res.headers))
    limiter.close()


def test_starlette_store_down_refusals_never_say_t_0() -> None:
    app = Starlette(
        routes=[Route("/local", starlette_ok), Route("/closed", starlette_ok)],
        middleware=[Middleware(StarletteMiddleware, rules=DOWN, redis_url=dead_redis_url())],
    )
    with TestClient(app) as client:
        for path, refused in (("/local", 429), ("/closed", 503)):
            answers = [client.get(path) for _ in range(5)]
            assert answers[-1].status_code == refused
            for res in answers:
                if res.status_code >= 400:
                    refusal_fields_are_honest(res.status_code, dict(res.headers))
