"""Challenge-pass tokens and the default challenge page.

A rule in ``challenge`` mode answers an over-limit client with a page instead of a bare
429. Solving it earns a token (cookie ``COOKIE_NAME`` or header ``HEADER_NAME``) that
lets that identity through that rule until it expires. The token names the rule and the
expiry but not the identity: the signature covers the identity, which the verifier
recomputes from the request, so a token copied to another client is worthless.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "COOKIE_NAME",
    "HEADER_NAME",
    "MAX_TOKEN_CHARS",
    "ChallengeContext",
    "ChallengeHandler",
    "ChallengeResponse",
    "ChallengeTokens",
    "default_challenge_page",
    "safe_return_to",
]

COOKIE_NAME = "ratemw_challenge"
HEADER_NAME = "X-Ratemw-Challenge"
#: longer tokens are refused before any decoding or hashing
MAX_TOKEN_CHARS = 512
_MIN_SECRET_BYTES = 16
_VERSION = "v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    # The decoder skips characters outside the alphabet and ignores spare bits; only
    # the canonical spelling of a payload is accepted, so a token has one form.
    if _b64(data) != text:
        raise ValueError("non-canonical base64")
    return data


class ChallengeTokens:
    """HMAC-SHA256 tokens that let one identity through one rule until they expire.

    ``secret`` needs at least 16 bytes (a ``str`` is UTF-8 encoded), else ``ValueError``.
    Tokens live ``ttl_seconds``; ``clock`` gives wall-clock epoch seconds (expiries are
    absolute so that every process sharing the secret agrees on them).
    """

    __slots__ = ("_clock", "_key", "ttl_seconds")

    def __init__(
        self,
        secret: bytes | str,
        *,
        ttl_seconds: float = 900.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
        if len(key) < _MIN_SECRET_BYTES:
            raise ValueError(f"secret must be at least {_MIN_SECRET_BYTES} bytes")
        if not ttl_seconds > 0:
            raise ValueError(f"ttl_seconds must be positive, not {ttl_seconds!r}")
        self._key = key
        self.ttl_seconds = ttl_seconds
        self._clock = clock

    def _sign(self, rule: str, identity: str, expiry: int) -> str:
        # NUL separates the fields (rule and identity never contain one, see below)
        message = f"{rule}\0{identity}\0{expiry}".encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._key, message, hashlib.sha256).digest())

    def issue(self, rule: str, identity: str, now: float | None = None) -> str:
        """A token for ``identity`` through ``rule``, valid ``ttl_seconds`` from ``now``.

        Raises ``ValueError`` if ``rule`` or ``identity`` contains NUL or the rule name
        is too long for a token of ``MAX_TOKEN_CHARS``.
        """
        if "\0" in rule or "\0" in identity:
            raise ValueError("rule and identity must not contain NUL")
        expiry = int((self._clock() if now is None else now) + self.ttl_seconds)
        payload = f"{_VERSION}.{rule}.{expiry}".encode("utf-8", "surrogatepass")
        token = f"{_b64(payload)}.{self._sign(rule, identity, expiry)}"
        if len(token) > MAX_TOKEN_CHARS:
            raise ValueError("rule name too long for a challenge token")
        return token

    def rule_of(self, token: str) -> str | None:
        """The rule a well-formed ``token`` names (unverified: call :meth:`verify`)."""
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return None
        try:
            payload = _unb64(token.partition(".")[0]).decode("utf-8", "surrogatepass")
        except ValueError:
            return None
        version, _, rest = payload.partition(".")
        rule = rest.rpartition(".")[0]
        return rule if version == _VERSION and rule and "\0" not in rule else None

    def verify(self, token: str, rule: str, identity: str, now: float | None = None) -> bool:
        """Whether ``token`` admits ``identity`` through ``rule`` at ``now``.

        Never raises for any string: malformed, forged, expired or foreign tokens are
        simply ``False``.
        """
        if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
            return False
        if "\0" in rule or "\0" in identity:
            return False
        try:
            payload_part, _, signature = token.partition(".")
            payload = _unb64(payload_part).decode("utf-8", "surrogatepass")
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
            return False
        version, _, rest = payload.partition(".")
        token_rule, _, expiry_text = rest.rpartition(".")
        if version != _VERSION or token_rule != rule:
            return False
        # isdigit() alone admits non-ASCII digits; 12 digits reach past the year 30000
        if not (expiry_text.isascii() and expiry_text.isdigit() and len(expiry_text) <= 12):
            return False
        expiry = int(expiry_text)
        if str(expiry) != expiry_text:  # a leading zero: one token, one spelling
            return False
        if not hmac.compare_digest(signature, self._sign(rule, identity, expiry)):
            return False
        return expiry > (self._clock() if now is None else now)


@dataclass(frozen=True, slots=True)
class ChallengeResponse:
    """What an adapter sends instead of calling the app."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True, slots=True)
class ChallengeContext:
    """What a challenge page needs to render.

    ``solve_path`` receives the solved form (a ``GET``, so every adapter can pass it on
    without reading a body); ``return_to`` is the original
    path and query, to redirect back to once solved (through ``safe_return_to``);
    ``extra`` carries provider settings, e.g. ``captcha_script``, ``captcha_site_key``
    and ``captcha_class`` (default ``"h-captcha"``; ``"g-recaptcha"``, ``"cf-turnstile"``).
    """

    rule: str
    retry_after_seconds: int
    solve_path: str
    return_to: str
    extra: Mapping[str, str] = field(default_factory=dict)
    #: proof that this identity was shown this page: the form sends it back
    nonce: str = ""


ChallengeHandler = Callable[[ChallengeContext], ChallengeResponse]

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>Too many requests</title>
{script}</head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 4rem auto; padding: 0 1rem">
<h1>Too many requests</h1>
<p>Please confirm you are human to continue, or try again in {retry} seconds.</p>
<form method="get" action="{action}">
<input type="hidden" name="rule" value="{rule}">
<input type="hidden" name="return_to" value="{return_to}">
<input type="hidden" name="nonce" value="{nonce}">
{widget}<button type="submit">I am human</button>
</form>
</body>
</html>
"""


def default_challenge_page(ctx: ChallengeContext) -> ChallengeResponse:
    """A 429 with a small self-contained HTML form posting to ``ctx.solve_path``.

    No external script unless ``ctx.extra`` names both ``captcha_script`` and
    ``captcha_site_key``. Every interpolated value is HTML-escaped.
    """
    esc = html.escape
    retry = max(0, int(ctx.retry_after_seconds))
    script = widget = ""
    src = ctx.extra.get("captcha_script")
    site_key = ctx.extra.get("captcha_site_key")
    if src and site_key:
        css_class = ctx.extra.get("captcha_class", "h-captcha")
        script = f'<script src="{esc(src)}" async defer></script>\n'
        widget = f'<div class="{esc(css_class)}" data-sitekey="{esc(site_key)}"></div>\n'
    body = _PAGE.format(
        script=script,
        retry=retry,
        action=esc(ctx.solve_path),
        rule=esc(ctx.rule),
        return_to=esc(ctx.return_to),
        nonce=esc(ctx.nonce),
        widget=widget,
    ).encode("utf-8")
    headers = [
        ("Content-Type", "text/html; charset=utf-8"),
        ("Cache-Control", "no-store"),
        ("Retry-After", str(retry)),
    ]
    return ChallengeResponse(429, headers, body)


def safe_return_to(value: str) -> str:
    """``value`` if it is a local path to redirect to, else ``"/"``.

    Accepted: ASCII, starting with exactly one ``/``, no backslash (browsers read ``/\\``
    as ``//``, another host), no control characters (browsers drop tabs and newlines,
    turning ``/\\t/host`` into ``//host``), at most 2048 characters.
    """
    if (
        not value.startswith("/")
        or value.startswith("//")
        or len(value) > 2048
        or not value.isascii()
        or not value.isprintable()
        or "\\" in value
    ):
        return "/"
    return value
