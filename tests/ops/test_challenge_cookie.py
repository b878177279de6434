"""Only a pass this limiter signed is ever written into the challenge cookie: whatever a
client presents beside its solution (header or cookie) never reaches ``Set-Cookie``."""

from __future__ import annotations

from http.cookies import SimpleCookie

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratemw.ops.challenge import COOKIE_NAME, HEADER_NAME
from ratemw.testing import ManualClock
from tests.ops.test_challenge_flow import exhaust, nonce_of, wsgi

# Characters a hostile client can fit into a header value (no CR/LF: servers refuse them).
_HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=120)


def _passes(set_cookie: str) -> list[str]:
    jar: SimpleCookie = SimpleCookie(set_cookie)
    return jar[COOKIE_NAME].value.split("~")


def _solve(clock: ManualClock, presented: dict[str, str]) -> tuple[str, str]:
    app = wsgi(clock)
    page = exhaust(app)
    query = {"rule": "shop", "nonce": nonce_of(page.text)}
    solved = app.get("/.ratemw/challenge", query, headers=presented, status=303)
    return solved.headers["Set-Cookie"], solved.headers[HEADER_NAME]


def test_a_presented_junk_pass_is_not_echoed(clock: ManualClock) -> None:
    cookie, token = _solve(clock, {HEADER_NAME: "junk; Domain=evil.example"})
    assert "evil.example" not in cookie
    assert "junk" not in cookie
    assert _passes(cookie) == [token]
    # attributes are ours alone
    assert cookie.count(";") == cookie.count("; ")
    assert "Domain" not in cookie


def test_a_valid_earlier_pass_is_kept_beside_the_new_one(clock: ManualClock) -> None:
    app = wsgi(clock)
    first = app.get(
        "/.ratemw/challenge", {"rule": "shop", "nonce": nonce_of(exhaust(app).text)}, status=303
    ).headers[HEADER_NAME]
    clock.advance(1)  # a new expiry, so a new token
    app.reset()
    page = app.get("/shop", status=429)
    solved = app.get(
        "/.ratemw/challenge",
        {"rule": "shop", "nonce": nonce_of(page.text)},
        headers={HEADER_NAME: f"{first}~forged.token"},
        status=303,
    )
    kept = _passes(solved.headers["Set-Cookie"])
    assert kept == [first, solved.headers[HEADER_NAME]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=_HEADER_TEXT, cookie=_HEADER_TEXT)
def test_whatever_is_presented_only_signed_passes_come_back(header: str, cookie: str) -> None:
    presented = {HEADER_NAME: header, "Cookie": f"{COOKIE_NAME}={cookie}"}
    set_cookie, token = _solve(ManualClock(), presented)
    assert _passes(set_cookie) == [token]
    name_value, *attributes = set_cookie.split("; ")
    assert name_value == f"{COOKIE_NAME}={token}"
    assert {a.split("=")[0] for a in attributes} <= {"Path", "Max-Age", "HttpOnly", "SameSite"}
