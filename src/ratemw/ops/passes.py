"""``Challenges``: the challenge page of ``action: challenge`` rules and its passes.

A rejected request of such a rule is answered with the challenge page instead of
problem+json. The page sends the solution to ``challenge_path`` (a GET, so every
adapter can hand it over without reading a body); a solved challenge is answered with
a redirect back that sets a signed, expiring pass (cookie ``ratemw_challenge``, and
header ``X-Ratemw-Challenge`` for API clients) for that rule and identity.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from ratemw.decision import Decision, Outcome
from ratemw.ops.challenge import (
    COOKIE_NAME,
    HEADER_NAME,
    ChallengeContext,
    ChallengeTokens,
    default_challenge_page,
    safe_return_to,
)

if TYPE_CHECKING:
    from ratemw.ops.config import OpsConfig
    from ratemw.request import RequestInfo

__all__ = ["Challenges"]

log = logging.getLogger("ratemw")
_MAX_PASSES = 4  # tokens one cookie carries (one per challenge rule solved)
_NONCE_SECONDS = 600.0  # how long a served page can be solved
_Response = tuple[int, list[tuple[str, str]], bytes]


def _clicked(info: RequestInfo, query: Mapping[str, str]) -> bool:
    return True  # the default page's button: a click, no CAPTCHA


class Challenges:
    """Issues and checks challenge passes for one limiter."""

    def __init__(self, config: OpsConfig, wall: Callable[[], float]) -> None:
        secret = config.challenge_secret
        self.ephemeral = secret is None
        # Without a configured secret passes work only in the process that issued them.
        self.tokens = ChallengeTokens(
            secret if secret is not None else os.urandom(32),
            ttl_seconds=config.challenge_ttl_seconds,
            clock=wall,
        )
        # Nonces prove the page was served to this identity; another key, so that a
        # nonce is never a pass.
        key = self.tokens._key
        self.nonces = ChallengeTokens(
            hmac.new(key, b"ratemw challenge nonce", hashlib.sha256).digest(),
            ttl_seconds=_NONCE_SECONDS,
            clock=wall,
        )
        self.ttl = config.challenge_ttl_seconds
        self.path = config.challenge_path
        self.render = config.challenge_page or default_challenge_page
        self.verify = config.challenge_verify or _clicked
        self.extra = config.challenge_extra
        self._wall = wall
        self._warned = False

    def _presented(self, info: RequestInfo) -> list[str]:
        found: list[str] = []
        header = info.headers.get(HEADER_NAME.lower())
        if header:
            found.extend(header.split("~"))
        cookie = info.headers.get("cookie")
        if cookie and COOKIE_NAME in cookie:
            try:
                jar: SimpleCookie = SimpleCookie(cookie)
            except CookieError:
                jar = SimpleCookie()
            morsel = jar.get(COOKIE_NAME)
            if morsel is not None:
                found.extend(morsel.value.split("~"))
        return found[: 2 * _MAX_PASSES]

    def _valid_passes(
        self, info: RequestInfo, key_of: Callable[[str], Hashable | None],
        digest: Callable[[Hashable], str], new: str,
    ) -> list[str]:  # fmt: skip
        """The passes the client presented that still verify: only a pass this secret
        signed may go back into the cookie, never what the client sent (a "pass" of
        ``junk; Domain=evil.example`` would otherwise set attributes of its own)."""
        kept: list[str] = []
        for token in self._presented(info):
            rule = self.tokens.rule_of(token)
            key = None if rule is None else key_of(rule)
            if (
                rule is not None and key is not None and token != new and token not in kept
                and self.tokens.verify(token, rule, digest(key))
            ):  # fmt: skip
                kept.append(token)
        return kept[: _MAX_PASSES - 1]

    def passed(self, info: RequestInfo, rule: str, identity: str) -> bool:
        """True when the request carries a valid pass for ``rule`` and ``identity``."""
        return any(self.tokens.verify(t, rule, identity) for t in self._presented(info))

    def page(
        self, rule: str, identity: str, wait: float, info: RequestInfo
    ) -> Callable[[], _Response]:
        """The answer to a challenged request (rendered when the adapter asks)."""
        if self.ephemeral and not self._warned:
            self._warned = True
            log.warning(
                "ratemw: no challenge_secret (RATEMW_CHALLENGE_SECRET): challenge passes "
                "are valid only in the process that issued them"
            )
        query = info.query.decode("latin-1") if isinstance(info.query, bytes) else info.query
        back = safe_return_to(f"{info.path}?{query}" if query else info.path)
        # as Decision.retry_after_seconds: waits carry a hair of slack against rounding
        retry = max(1, math.ceil(wait - 1e-5))
        nonce = self.nonces.issue(rule, identity) if identity else ""
        ctx = ChallengeContext(rule, retry, self.path, back, self.extra, nonce)

        def respond() -> _Response:
            answer = self.render(ctx)
            return answer.status, list(answer.headers), answer.body

        return respond

    def solve(self, info: RequestInfo, key_of: Callable[[str], Hashable | None],
              digest: Callable[[Hashable], str]) -> Decision:  # fmt: skip
        """Answer a request to ``challenge_path``: a redirect with a pass when solved."""
        raw = info.query.decode("latin-1") if isinstance(info.query, bytes) else info.query
        query = dict(parse_qsl(raw[:8192]))
        rule = query.get("rule", "")
        back = safe_return_to(query.get("return_to", "/"))
        key = key_of(rule)
        identity = "" if key is None else digest(key)
        solved = (
            key is not None
            and self.nonces.verify(query.get("nonce", ""), rule, identity)
            and self.verify(info, query)
        )
        if not solved:
            # Unknown rule, a page never served to this identity, or not solved: the page.
            again = self.page(rule or "challenge", identity, 1.0, info)
            outcome = Outcome((rule,), (), None, "challenge", again)
            return Decision(429, None, 0.0, self._wall, outcome, 1.0)
        token = self.tokens.issue(rule, identity)
        kept = self._valid_passes(info, key_of, digest, token)
        secure = "; Secure" if info.scheme == "https" else ""
        cookie = (
            f"{COOKIE_NAME}={'~'.join([*kept, token])}; Path=/; Max-Age={int(self.ttl)}; "
            f"HttpOnly; SameSite=Lax{secure}"
        )
        headers = [
            ("Location", back),
            ("Set-Cookie", cookie),
            (HEADER_NAME, token),
            ("Cache-Control", "no-store"),
            ("Content-Length", "0"),
        ]

        def respond() -> _Response:
            return 303, headers, b""

        return Decision(303, None, 0.0, self._wall, Outcome((), (), None, "challenge", respond))
