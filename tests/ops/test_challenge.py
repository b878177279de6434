"""Challenge tokens (injected clock), the default challenge page, safe_return_to."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw.ops.challenge import (
    COOKIE_NAME,
    HEADER_NAME,
    MAX_TOKEN_CHARS,
    ChallengeContext,
    ChallengeHandler,
    ChallengeResponse,
    ChallengeTokens,
    default_challenge_page,
    safe_return_to,
)
from ratemw.testing import ManualClock

SECRET = b"0123456789abcdef-test-secret"
RULE = "login"
WHO = "ip:203.0.113.7"


@pytest.fixture
def tokens(clock: ManualClock) -> ChallengeTokens:
    return ChallengeTokens(SECRET, ttl_seconds=900, clock=clock.time)


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_names() -> None:
    assert COOKIE_NAME == "ratemw_challenge"
    assert HEADER_NAME == "X-Ratemw-Challenge"


def test_admits_its_rule_and_identity_until_expiry(
    tokens: ChallengeTokens, clock: ManualClock
) -> None:
    token = tokens.issue(RULE, WHO)
    assert tokens.verify(token, RULE, WHO)
    clock.advance(899.5)
    assert tokens.verify(token, RULE, WHO)
    clock.advance(0.5)  # expiry <= now
    assert not tokens.verify(token, RULE, WHO)


def test_explicit_now_overrides_the_clock(tokens: ChallengeTokens) -> None:
    token = tokens.issue(RULE, WHO, now=100.0)
    assert tokens.verify(token, RULE, WHO, now=999.0)
    assert not tokens.verify(token, RULE, WHO, now=1_000.0)
    assert not tokens.verify(token, RULE, WHO)  # the clock is far past 1000


def test_token_format(tokens: ChallengeTokens, clock: ManualClock) -> None:
    token = tokens.issue("api.v1.search", WHO)
    payload, signature = token.split(".")
    assert "=" not in token
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
    expiry = int(clock.time() + 900)
    assert _unb64(payload) == f"v1.api.v1.search.{expiry}".encode()
    assert len(_unb64(signature)) == 32  # SHA-256
    assert WHO.encode() not in _unb64(payload)
    assert tokens.verify(token, "api.v1.search", WHO)  # dots in the rule name are fine


@pytest.mark.parametrize(
    ("rule", "identity"),
    [(RULE, "ip:203.0.113.8"), ("search", WHO), ("logi", WHO), (RULE, WHO + "x"), (RULE, "")],
)
def test_rejected_for_another_rule_or_identity(
    tokens: ChallengeTokens, rule: str, identity: str
) -> None:
    assert not tokens.verify(tokens.issue(RULE, WHO), rule, identity)


def test_rejected_when_signed_by_another_secret(clock: ManualClock) -> None:
    other = ChallengeTokens(b"another-secret-of-16+", clock=clock.time)
    ours = ChallengeTokens(SECRET, clock=clock.time)
    assert not ours.verify(other.issue(RULE, WHO), RULE, WHO)


def test_rejected_with_a_tampered_signature(tokens: ChallengeTokens) -> None:
    token = tokens.issue(RULE, WHO)
    payload, signature = token.split(".")
    for i in range(len(signature)):
        flipped = "A" if signature[i] != "A" else "B"
        forged = f"{payload}.{signature[:i]}{flipped}{signature[i + 1 :]}"
        assert not tokens.verify(forged, RULE, WHO), i


def test_rejected_with_a_tampered_payload(tokens: ChallengeTokens, clock: ManualClock) -> None:
    token = tokens.issue(RULE, WHO)
    _, signature = token.split(".")
    expiry = int(clock.time() + 900)
    for payload in (
        f"v1.{RULE}.{expiry + 86_400}",  # longer life
        f"v2.{RULE}.{expiry}",
        f"v1.search.{expiry}",
        f"v1.{RULE}.0{expiry}",  # same number, other spelling
        f"v1.{RULE}.{expiry}.",
    ):
        assert not tokens.verify(f"{_b64(payload.encode())}.{signature}", RULE, WHO), payload


def test_rejected_with_a_non_canonical_spelling(tokens: ChallengeTokens) -> None:
    token = tokens.issue("rules", WHO)  # an 18-byte payload: spare bits in the last char
    payload, signature = token.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    spare = alphabet[alphabet.index(payload[-1]) ^ 1]
    assert _unb64(payload[:-1] + spare) == _unb64(payload)  # decodes the same ...
    for variant in (
        f"{payload[:-1]}{spare}.{signature}",  # ... but is not how we spell it
        f"{payload}==.{signature}",
        f"{payload[:4]}!{payload[4:]}.{signature}",  # the decoder would skip the "!"
        f"{payload}.{signature}=",
        f" {token}",
        f"{token}.",
    ):
        assert not tokens.verify(variant, "rules", WHO), variant


GARBAGE = [
    "",
    ".",
    "..",
    "a.b",
    "v1",
    "v1.login.99999999999",
    "====.====",
    "\x00",
    "\ud800",
    "é" * 40,
    "🙂.🙂",
    "\uff21\uff22\uff23.\uff24\uff25\uff26",  # fullwidth "ABC.DEF"
    "a" * (MAX_TOKEN_CHARS + 1),
    "A" * 10**6,
    _b64(b"v1.login.") + ".x",
    _b64(b"v1.login.\xd9\xa3\xd9\xa3") + ".x",  # Arabic-Indic digits
    _b64(b"v1.login." + b"9" * 5000) + ".x",
    _b64(b"\xff\xfe\xfd") + ".x",
]


@pytest.mark.parametrize("token", GARBAGE)
def test_garbage_is_rejected_without_raising(tokens: ChallengeTokens, token: str) -> None:
    assert tokens.verify(token, RULE, WHO) is False


@given(st.text(max_size=600))
def test_any_text_is_rejected_without_raising(token: str) -> None:
    tokens = ChallengeTokens(SECRET, clock=lambda: 1_700_000_000.0)
    assert tokens.verify(token, RULE, WHO) is False


@given(
    rule=st.text(min_size=1, max_size=60).filter(lambda s: "\0" not in s),
    identity=st.text(max_size=200).filter(lambda s: "\0" not in s),
)
def test_round_trip_for_any_names(rule: str, identity: str) -> None:
    tokens = ChallengeTokens(SECRET, clock=lambda: 1_700_000_000.0)
    token = tokens.issue(rule, identity)
    assert len(token) <= MAX_TOKEN_CHARS
    assert tokens.verify(token, rule, identity)
    assert not tokens.verify(token, rule, identity + "x")


def test_odd_names_never_raise_in_verify(tokens: ChallengeTokens) -> None:
    token = tokens.issue(RULE, WHO)
    assert not tokens.verify(token, RULE + "\0", WHO)
    assert not tokens.verify(token, RULE, "\ud800")
    lone = tokens.issue("r\ud800", "id\udfff")  # lone surrogates, as from a bad decode
    assert tokens.verify(lone, "r\ud800", "id\udfff")


def test_issue_rejects_nul_and_oversized_rules(tokens: ChallengeTokens) -> None:
    with pytest.raises(ValueError, match="NUL"):
        tokens.issue("a\0b", WHO)
    with pytest.raises(ValueError, match="NUL"):
        tokens.issue(RULE, "a\0b")
    with pytest.raises(ValueError, match="too long"):
        tokens.issue("r" * 400, WHO)


def test_secret_and_ttl_are_checked() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        ChallengeTokens(b"x" * 15)
    with pytest.raises(ValueError, match="16 bytes"):
        ChallengeTokens("short")
    with pytest.raises(ValueError, match="ttl_seconds"):
        ChallengeTokens(SECRET, ttl_seconds=0)
    as_str = ChallengeTokens("é" * 8, clock=lambda: 0.0)  # 16 bytes once encoded
    as_bytes = ChallengeTokens("é".encode() * 8, clock=lambda: 0.0)
    assert as_bytes.verify(as_str.issue(RULE, WHO), RULE, WHO)


def _context(**changes: object) -> ChallengeContext:
    values: dict[str, object] = {
        "rule": RULE,
        "retry_after_seconds": 30,
        "solve_path": "/.ratemw/challenge",
        "return_to": "/account?tab=keys",
    }
    values.update(changes)
    return ChallengeContext(**values)  # type: ignore[arg-type]


def test_default_page() -> None:
    handler: ChallengeHandler = default_challenge_page
    response = handler(_context())
    assert isinstance(response, ChallengeResponse)
    assert response.status == 429
    assert response.headers == [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Retry-After", "30"),
    ]
    page = response.body.decode("utf-8")
    assert '<form method="get" action="/.ratemw/challenge">' in page
    assert '<input type="hidden" name="rule" value="login">' in page
    assert '<input type="hidden" name="return_to" value="/account?tab=keys">' in page
    assert '<button type="submit">I am human</button>' in page
    assert "<script" not in page and "http" not in page  # self-contained


def test_default_page_with_a_captcha() -> None:
    extra = {
        "captcha_script": "https://challenges.cloudflare.com/turnstile/v0/api.js",
        "captcha_site_key": "0x4AAA",
        "captcha_class": "cf-turnstile",
    }
    page = default_challenge_page(_context(extra=extra)).body.decode()
    assert '<script src="https://challenges.cloudflare.com/turnstile/v0/api.js"' in page
    assert '<div class="cf-turnstile" data-sitekey="0x4AAA"></div>' in page
    default_class = default_challenge_page(
        _context(extra={"captcha_script": "https://hcaptcha.com/1/api.js", "captcha_site_key": "k"})
    ).body.decode()
    assert '<div class="h-captcha" data-sitekey="k"></div>' in default_class
    # a key without a script (or the reverse) adds nothing
    lone = default_challenge_page(_context(extra={"captcha_site_key": "k"})).body.decode()
    assert "<script" not in lone and "data-sitekey" not in lone


def test_default_page_escapes_every_value() -> None:
    hostile = '"><script>alert(1)</script>'
    extra = {"captcha_script": hostile, "captcha_site_key": hostile, "captcha_class": hostile}
    ctx = _context(rule=hostile, solve_path=hostile, return_to=hostile, extra=extra)
    page = default_challenge_page(ctx).body.decode()
    assert "<script>alert(1)" not in page
    assert hostile not in page
    assert page.count("&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;") == 6
    assert "<script" in page  # the provider's tag itself, with an escaped src


def test_retry_after_is_a_non_negative_integer() -> None:
    response = default_challenge_page(_context(retry_after_seconds=-5))
    assert ("Retry-After", "0") in response.headers


@pytest.mark.parametrize(
    "value", ["/", "/account", "/a/b?x=1&y=%2F%2Fz#top", "/search?q=a b", "/http://x"]
)
def test_safe_return_to_keeps_local_paths(value: str) -> None:
    assert safe_return_to(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "account",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        " /account",
        "/\t/evil.example",
        "/a\r\nSet-Cookie: x=1",
        "/\x00",
        "/\x7f",
        "/caf\u00e9",
        "/\u2028",
        "/" + "a" * 2048,
    ],
)
def test_safe_return_to_rejects_everything_else(value: str) -> None:
    assert safe_return_to(value) == "/"
