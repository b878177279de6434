"""``action: challenge`` end to end: the page, the solve redirect, passes that admit,
and forged, expired or borrowed passes that do not."""

from __future__ import annotations

import asyncio
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from ratemw import AsyncLimiter, Limiter, RequestInfo
from ratemw.asgi import RateLimitMiddleware as ASGIMiddleware
from ratemw.ops.challenge import COOKIE_NAME, HEADER_NAME
from ratemw.testing import ManualClock
from ratemw.types import Receive, Scope, Send
from ratemw.wsgi import RateLimitMiddleware

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # webob imports cgi
    from webtest import TestApp

PEER = "198.51.100.30"
SECRET = "a challenge secret of 32 bytes!!"
RULES: dict[str, Any] = {
    "rules": [
        {"name": "shop", "match": {"path": "/shop"}, "limit": "2/minute",
         "action": "challenge"},
        {"name": "api", "match": {"path": "/api"}, "limit": "1/minute"},
    ]
}  # fmt: skip


def hello(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def wsgi(clock: ManualClock, **ops: Any) -> TestApp:
    options = {"interval_seconds": 0, "challenge_secret": SECRET, **ops}
    limiter = Limiter(RULES, clock=clock, operations=options)
    return TestApp(RateLimitMiddleware(hello, limiter=limiter), extra_environ={"REMOTE_ADDR": PEER})


def exhaust(app: TestApp, path: str = "/shop", **kw: Any) -> Any:
    for _ in range(2):
        assert app.get(path, **kw).status_int == 200
    return app.get(path, status=429, **kw)


def nonce_of(page: str) -> str:
    found = re.search(r'name="nonce" value="([^"]*)"', page)
    assert found is not None
    return found.group(1)


def solve(app: TestApp, page: Any, status: int = 303, **params: str) -> Any:
    """Send the page's form back, as a browser would."""
    query = {"rule": "shop", "nonce": nonce_of(page.text), **params}
    return app.get("/.ratemw/challenge", query, status=status)


def solve_with(app: TestApp, page: Any, status: int, params: dict[str, str]) -> Any:
    query = {"rule": "shop", "nonce": nonce_of(page.text), **params}
    return app.get("/.ratemw/challenge", query, status=status)


def test_the_page_then_a_pass_that_admits(clock: ManualClock) -> None:
    app = wsgi(clock)
    page = exhaust(app, "/shop?item=7")
    assert page.content_type == "text/html"
    assert page.headers["Retry-After"] == "30"
    assert 'action="/.ratemw/challenge"' in page.text
    assert 'name="return_to" value="/shop?item=7"' in page.text
    solved = solve(app, page, return_to="/shop?item=7")
    assert solved.headers["Location"].endswith("/shop?item=7")
    assert "HttpOnly" in solved.headers["Set-Cookie"]
    # webtest keeps the cookie: the identity goes through this rule now ...
    for _ in range(5):
        assert app.get("/shop").status_int == 200
    # ... and through no other rule
    assert app.get("/api").status_int == 200
    assert app.get("/api", status=429).content_type == "application/problem+json"


def test_an_expired_pass_does_not_admit(clock: ManualClock) -> None:
    app = wsgi(clock, challenge_ttl_seconds=60)
    solve(app, exhaust(app), return_to="/shop")
    assert app.get("/shop").status_int == 200
    clock.advance(61)  # the pass has expired; the bucket refilled 2 in the meantime
    assert app.get("/shop").status_int == 200
    assert app.get("/shop").status_int == 200
    assert "I am human" in app.get("/shop", status=429).text


def test_forged_or_borrowed_passes_do_not_admit(clock: ManualClock) -> None:
    app = wsgi(clock)
    token = solve(app, exhaust(app)).headers[HEADER_NAME]
    app.reset()  # forget the cookie
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    app.get("/shop", headers={HEADER_NAME: forged}, status=429)
    app.set_cookie(COOKIE_NAME, forged)
    app.get("/shop", status=429)
    # Signed with another secret: refused too.
    other = wsgi(clock, challenge_secret="another secret of 32 bytes......")
    stranger = solve(other, exhaust(other)).headers[HEADER_NAME]
    app.get("/shop", headers={HEADER_NAME: stranger}, status=429)
    # Valid, but issued to another address: refused for this one.
    app.get("/shop", headers={HEADER_NAME: token}, status=200)  # the owner
    borrower = {"REMOTE_ADDR": "198.51.100.31"}
    exhaust(app, extra_environ=borrower)
    app.get("/shop", headers={HEADER_NAME: token}, extra_environ=borrower, status=429)


def test_an_unsolved_challenge_is_asked_again(clock: ManualClock) -> None:
    def captcha(info: RequestInfo, query: Mapping[str, str]) -> bool:
        return query.get("h-captcha-response") == "ok"

    app = wsgi(clock, challenge_verify=captcha,
               challenge_extra={"captcha_script": "https://hcaptcha.example/api.js",
                                "captcha_site_key": "site-key"})  # fmt: skip
    page = exhaust(app)
    assert 'data-sitekey="site-key"' in page.text
    again = solve_with(app, page, 429, {"h-captcha-response": "no"})
    assert "I am human" in again.text
    app.get("/shop", status=429)
    solve_with(app, again, 303, {"h-captcha-response": "ok"})
    app.get("/shop", status=200)


def test_hostile_return_to_and_unknown_rule(clock: ManualClock) -> None:
    app = wsgi(clock)
    solved = solve(app, exhaust(app), return_to="//evil.example/x")
    assert solved.headers["Location"] in ("/", "http://localhost/")
    # a rule that is not a challenge rule yields no pass
    app.get("/.ratemw/challenge", {"rule": "api"}, status=429)
    app.get("/.ratemw/challenge", {"rule": "nope"}, status=429)


def test_challenge_counts(clock: ManualClock) -> None:
    app = wsgi(clock)
    solve(app, exhaust(app))
    app.get("/shop")
    limiter = app.app.limiter
    decisions = limiter.metrics().decisions
    assert decisions[("shop", "/shop", "*", "allowed", "enforce")] == 3
    assert decisions[("shop", "/shop", "*", "challenged", "enforce")] == 1


def test_the_asgi_middleware_serves_the_flow(clock: ManualClock) -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"hello"})

    limiter = AsyncLimiter(
        RULES, clock=clock, operations={"interval_seconds": 0, "challenge_secret": SECRET}
    )
    mw = ASGIMiddleware(app, limiter=limiter)

    async def main() -> list[Any]:
        transport = httpx.ASGITransport(app=mw, client=(PEER, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            statuses = [(await c.get("/shop")).status_code for _ in range(3)]
            page = await c.get("/shop")
            params = {"rule": "shop", "nonce": nonce_of(page.text)}
            solved = await c.get("/.ratemw/challenge", params=params)
            after = await c.get("/shop")  # the client keeps the cookie
            return [statuses, page, solved, after]

    statuses, page, solved, after = asyncio.run(main())
    assert statuses == [200, 200, 429]
    assert page.headers["content-type"].startswith("text/html")
    assert solved.status_code == 303 and COOKIE_NAME in solved.headers["set-cookie"]
    assert after.status_code == 200


def test_hostile_cookies_headers_and_queries_never_raise(clock: ManualClock) -> None:
    limiter = Limiter(RULES, clock=clock, operations={"interval_seconds": 0,
                                                      "challenge_secret": SECRET})  # fmt: skip
    for _ in range(2):
        limiter.decide(RequestInfo(path="/shop", peer=PEER))
    hostile = [
        {"cookie": 'ratemw_challenge="\\x00\\xff; ===; ;;'},
        {"cookie": "ratemw_challenge=" + "A" * 100_000},
        {"cookie": "ratemw_challenge=" + "~".join(["x.y"] * 1000)},
        {HEADER_NAME.lower(): "\udcff\u2603" * 50},
        {HEADER_NAME.lower(): "~" * 5000},
    ]
    for headers in hostile:
        d = limiter.decide(RequestInfo(path="/shop", peer=PEER, headers=headers))
        assert d.status == 429 and d.action == "challenge"
        assert d.response()[0] == 429
    for query in ("rule=%ff%00&return_to=%0d%0aLocation:%20x", b"\xff\xfe=\x00", "&" * 10_000,
                  "rule=shop&return_to=" + "/a" * 10_000):  # fmt: skip
        d = limiter.decide(RequestInfo(path="/.ratemw/challenge", peer=PEER, query=query))
        status, answer, _ = d.response()
        assert status in (303, 429)
        for _, value in answer:
            assert "\r" not in value and "\n" not in value


def test_a_pass_needs_a_page_served_to_the_same_identity(clock: ManualClock) -> None:
    app = wsgi(clock)
    app.get("/.ratemw/challenge", {"rule": "shop"}, status=429)  # no page seen: no pass
    page = exhaust(app)
    app.get("/.ratemw/challenge", {"rule": "shop", "nonce": "forged"}, status=429)
    borrower = {"REMOTE_ADDR": "198.51.100.31"}  # another address replays this page's nonce
    query = {"rule": "shop", "nonce": nonce_of(page.text)}
    app.get("/.ratemw/challenge", query, extra_environ=borrower, status=429)
    clock.advance(601)  # the page is older than the nonce lives
    app.get("/.ratemw/challenge", query, status=429)
    solve(app, exhaust(app))


def test_other_rules_keep_their_fast_path(clock: ManualClock) -> None:
    catch_all = {"name": "all", "match": {"path": "/**"}, "limit": "100/minute"}
    rules = {"rules": [*RULES["rules"], catch_all]}
    limiter = Limiter(rules, clock=clock, operations={"interval_seconds": 0,
                                                      "challenge_secret": SECRET})  # fmt: skip
    hit = limiter.snapshot.candidates("/anything")
    assert hit[2] is not None and limiter._gated is False  # the one-rule fast path
    # ratemw's own endpoint never takes it, even under a catch-all rule
    assert limiter.snapshot.candidates("/.ratemw/challenge")[2] is None
    for _ in range(2):
        limiter.decide(RequestInfo(path="/shop", peer=PEER))
    page = limiter.decide(RequestInfo(path="/shop", peer=PEER)).response()[2].decode()
    query = f"rule=shop&nonce={nonce_of(page)}"
    answer = limiter.decide(RequestInfo(path="/.ratemw/challenge", peer=PEER, query=query))
    assert answer.status == 303
