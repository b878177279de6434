"""The console's security and plumbing, in process (no browser): headers, sessions,
CSRF, roles, bounds, escaping, and that its actions are the REST API's."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratemw.control.app import create_app
from ratemw.control.auth import Principal, TokenTable, token_digest
from ratemw.control.ui import ConsoleConfig
from ratemw.control.ui.render import CSP
from ratemw.control.ui.session import Sessions
from ratemw.control.ui.web import safe_next
from tests.control import ALICE, BOB, CAROL, RULES_V1, VICTOR, token_table

SECRET = b"s" * 32


class Browser:
    """An httpx client with a cookie jar on the console's ASGI app."""

    def __init__(self, app: Any, base: str = "http://console.test") -> None:
        self.loop = asyncio.new_event_loop()
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.loop.run_until_complete(self.client.request(method, path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def csrf(self, path: str = "/ui/versions") -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', self.get(path).text)
        assert found is not None
        return found.group(1)

    def sign_in(self, token: str) -> httpx.Response:
        return self.post("/ui/signin", data={"csrf": self.csrf("/ui/signin"), "token": token})

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()


def published(document: bytes, origin: str, target: str) -> str:
    return "d" * 64


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Any]:
    target = "redis://:hunter2sekret@127.0.0.1:1/0?key=rules"
    made = create_app(f"sqlite:///{tmp_path / 'c.db'}", [target], token_table(),
                      publisher=published, console=ConsoleConfig(SECRET))  # fmt: skip
    yield made
    made.state.service.db.close()


@pytest.fixture
def browser(app: Any) -> Iterator[Browser]:
    b = Browser(app)
    yield b
    b.close()


def audit(app: Any) -> list[dict[str, Any]]:
    return [e.to_json() for e in app.state.service.audit.entries(limit=1000)]


def test_every_answer_carries_the_policy_and_is_not_cached(browser: Browser) -> None:
    paths = ("/ui/", "/ui/signin", "/ui/nothing-here", "/ui/static/console.css")
    for response in (browser.get(path) for path in paths):
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    assert browser.get("/ui/").headers["cache-control"] == "no-store"
    assert browser.get("/ui/").status_code == 303
    assert browser.get("/ui/nothing-here").status_code == 404
    js = browser.get("/ui/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    for bad in ("/ui/static/web.py", "/ui/static/..%2Fweb.py", "/ui/static/%2e%2e"):
        assert browser.get(bad).status_code == 404
    # No inline script or style anywhere: every script is our file, no style attribute.
    page = browser.get("/ui/signin").text
    assert re.findall(r"<script[^>]*>", page) == [
        re.search(r'<script src="/ui/static/console\.js\?v=\w+" defer>', page).group(0)  # type: ignore[union-attr]
    ]
    assert "style=" not in page and "<style" not in page


def test_sign_in_needs_the_forms_csrf_token_and_audits_failures(app: Any, browser: Browser) -> None:
    no_nonce = Browser(app)
    try:
        # A token posted without the sign-in page's nonce cookie (a third-party form).
        forged = no_nonce.post("/ui/signin", data={"token": CAROL, "csrf": "x"})
        assert forged.status_code == 403 and "ratemw_console=" not in str(forged.headers)
    finally:
        no_nonce.close()
    assert browser.sign_in("tok-nobody").status_code == 401
    ok = browser.sign_in(CAROL)
    assert ok.status_code == 303 and ok.headers["location"] == "/ui/?done=signed-in"
    cookies = ok.headers.get_list("set-cookie")
    cookie = next(c for c in cookies if c.startswith("ratemw_console="))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/ui" in cookie
    assert "Max-Age=28800" in cookie and "Secure" not in cookie
    assert CAROL not in cookie and token_digest(CAROL) in str(Sessions(SECRET, 60).read(
        cookie.split(";")[0].split("=", 1)[1]))  # fmt: skip
    seen = [(e["principal"], e["action"], e["outcome"]) for e in audit(app)]
    assert seen == [("-", "console.signin", "refused"), ("-", "console.signin", "unauthenticated"),
                    ("carol", "console.signin", "ok")]  # fmt: skip
    assert all("tok-" not in str(e) for e in audit(app))


def test_the_cookie_is_secure_over_tls_or_when_configured(app: Any, tmp_path: Path) -> None:
    tls = Browser(app, "https://console.test")
    try:
        assert "; Secure" in tls.sign_in(CAROL).headers["set-cookie"]
    finally:
        tls.close()
    forced = create_app(f"sqlite:///{tmp_path / 'd.db'}", [], token_table(),
                        console=ConsoleConfig(SECRET, secure_cookie=True))  # fmt: skip
    plain = Browser(forced)
    try:
        assert "; Secure" in plain.sign_in(CAROL).headers["set-cookie"]
    finally:
        plain.close()
        forced.state.service.db.close()


def test_sessions_are_signed_expire_and_end_with_their_token() -> None:
    now = [1000.0]
    sessions = Sessions(SECRET, 60, clock=lambda: now[0])
    session, value = sessions.issue(token_digest(ALICE))
    assert sessions.read(value) == session
    payload, signature = value.split(".")
    assert sessions.read(payload + "." + signature[::-1]) is None
    assert sessions.read(value + "x") is None and sessions.read("x" * 5000) is None
    assert Sessions(b"t" * 32, 60, clock=lambda: now[0]).read(value) is None  # another secret
    now[0] += 61
    assert sessions.read(value) is None
    now[0] = 1000.0
    sessions.revoke(session)
    assert sessions.read(value) is None
    table = token_table()
    assert table.principal_of(token_digest(ALICE)) == Principal("alice", "editor")
    assert TokenTable().principal_of(token_digest(ALICE)) is None
    assert table.principal_of("sha256:nothex") is None


def test_posts_need_csrf_same_origin_and_the_role(app: Any, browser: Browser) -> None:
    browser.sign_in(VICTOR)
    csrf = browser.csrf()
    form = {"factor": "0.5", "seconds": "60"}
    assert browser.post("/ui/ops/brownout", data=form).status_code == 403
    assert browser.post("/ui/ops/brownout", data={**form, "csrf": "A" * 43}).status_code == 403
    cross = browser.post("/ui/ops/brownout", data={**form, "csrf": csrf},
                         headers={"Origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403 and "another site" in cross.text
    site = browser.post("/ui/ops/brownout", data={**form, "csrf": csrf},
                        headers={"Sec-Fetch-Site": "cross-site"})  # fmt: skip
    assert site.status_code == 403
    role = browser.post("/ui/ops/brownout", data={**form, "csrf": csrf},
                        headers={"Origin": "http://console.test"})  # fmt: skip
    assert role.status_code == 403 and "role viewer may not deploy" in role.text
    outcomes = [(e["principal"], e["action"], e["outcome"], e["detail"].get("error"))
                for e in audit(app) if e["action"] == "setBrownout"]  # fmt: skip
    assert outcomes == [("victor", "setBrownout", "refused", "csrf")] * 4 + [
        ("victor", "setBrownout", "forbidden", "forbidden")
    ]
    # A signed-out browser's post is refused and audited too.
    anonymous = Browser(app)
    try:
        assert anonymous.post("/ui/rollback", data={"csrf": csrf}).status_code == 401
    finally:
        anonymous.close()
    assert audit(app)[-1]["outcome"] == "unauthenticated"


def test_bodies_are_bounded(app: Any, browser: Browser) -> None:
    browser.sign_in(CAROL)
    csrf = browser.csrf()
    huge = browser.post("/ui/ops/bans", data={"csrf": csrf, "reason": "x" * 70_000})
    assert huge.status_code == 413
    fields = "&".join(f"f{i}=1" for i in range(500)) + f"&csrf={csrf}"
    many = browser.post("/ui/rollback", content=fields.encode(),
                        headers={"Content-Type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert many.status_code == 422
    long_reason = browser.post("/ui/ops/bans", data={"csrf": csrf, "rule": "r" * 300})
    assert long_reason.status_code == 422
    assert [e["detail"]["error"] for e in audit(app) if e["action"] in ("addBan", "rollback")] == [
        "too_large", "invalid_request", "invalid_request",
    ]  # fmt: skip


def test_console_actions_are_the_rest_actions(app: Any, browser: Browser) -> None:
    """Proposing, approving and rolling out through the console audits the same actions
    as the REST API, refuses the same things, and redacts the same credentials."""
    browser.sign_in(ALICE)
    csrf = browser.csrf()
    document = RULES_V1.decode().replace("\n", "\r\n")  # as a browser sends a textarea
    form = {"csrf": csrf, "document": document, "format": "yaml", "message": "<b>hi</b>"}
    made = browser.post("/ui/edit/propose", data=form)
    assert made.status_code == 303 and made.headers["location"] == "/ui/versions/1?done=proposed"
    service = app.state.service
    assert service.get_version(1).document == RULES_V1
    page = browser.get("/ui/versions/1").text
    assert "&lt;b&gt;hi&lt;/b&gt;" in page and "<b>hi</b>" not in page
    own = browser.post("/ui/versions/1/approve", data={"csrf": csrf})
    assert own.status_code == 403  # the editor may not approve (role), let alone her own
    bob = Browser(app)
    carol = Browser(app)
    try:
        bob.sign_in(BOB)
        assert bob.post("/ui/versions/1/approve", data={"csrf": bob.csrf()}).status_code == 303
        carol.sign_in(CAROL)
        ask = carol.post("/ui/versions/1/rollout", data={"csrf": carol.csrf(), "stage": "enforce"})
        assert ask.status_code == 200 and "Yes: Roll out at enforce" in ask.text
        assert service.deployments() == []  # asked, not done
        enforce = {"csrf": carol.csrf(), "stage": "enforce", "confirm": "yes"}
        done = carol.post("/ui/versions/1/rollout", data=enforce)
        assert done.status_code == 303
        page = carol.get("/ui/versions/1").text
        assert "hunter2sekret" not in page and "redis://:***@127.0.0.1:1/0?key=rules" in page
        shadow = {"csrf": carol.csrf(), "stage": "shadow", "confirm": "yes"}
        again = carol.post("/ui/versions/1/rollout", data=shadow)
        assert again.status_code == 409 and "only moves forward" in again.text
    finally:
        bob.close()
        carol.close()
    actions = [(e["principal"], e["action"], e["outcome"]) for e in audit(app)
               if not e["action"].startswith("console.")]  # fmt: skip
    assert actions == [("alice", "propose", "ok"), ("alice", "approveVersion", "forbidden"),
                       ("bob", "approve", "ok"), ("carol", "rollout", "ok"),
                       ("carol", "rollout", "refused")]  # fmt: skip


def test_pages_without_the_limiters_redis_say_where_the_numbers_come_from(
    browser: Browser,
) -> None:
    browser.sign_in(VICTOR)
    overview = browser.get("/ui/").text
    assert "ratemw:default:{fleet}:m:&lt;minute&gt;" in overview and "--ops-redis" in overview
    assert "<svg" not in overview
    ops = browser.get("/ui/ops").text
    assert "Unavailable:" in ops and "--ops-redis" in ops


def test_where_sign_in_may_lead() -> None:
    assert safe_next("/ui/versions/3") == "/ui/versions/3"
    for bad in ("//evil.example/ui/", "https://evil.example", "/ui//evil", "/v1/versions",
                "/ui/\\evil", "/ui/x\nSet-Cookie: a=b", None, ""):  # fmt: skip
        assert safe_next(bad) == "/ui/"
