"""CSRF tokens: every state-changing form carries one, bound to the session.

A signed-in form's token is an HMAC of the session id; the sign-in form's is an HMAC of
a random nonce kept in a short-lived cookie of its own (so a third-party page cannot
sign a browser in under another token). Besides the token, a request whose ``Origin``
(or ``Sec-Fetch-Site``) says it came from another site is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from ratemw.control.ui.session import b64, derive_key

__all__ = ["FIELD", "SIGNIN_COOKIE", "Csrf", "same_origin"]

FIELD = "csrf"
SIGNIN_COOKIE = "ratemw_console_signin"


class Csrf:
    """Makes and checks CSRF tokens with a key derived from the service's secret."""

    def __init__(self, secret: bytes) -> None:
        self._key = derive_key(secret, "csrf")

    def token(self, binding: str) -> str:
        """The token of a session id (or ``signin:`` and a sign-in nonce)."""
        return b64(hmac.new(self._key, binding.encode("utf-8"), hashlib.sha256).digest())

    @staticmethod
    def nonce() -> str:
        return b64(os.urandom(18))

    def valid(self, binding: str, presented: str | None) -> bool:
        if not presented or len(presented) > 100:
            return False
        return hmac.compare_digest(presented.encode("ascii", "replace"),
                                   self.token(binding).encode("ascii"))  # fmt: skip


def same_origin(headers: Mapping[str, str], own: str) -> bool:
    """False when the browser says the request came from another origin: ``Origin``
    differs from ``own`` (``scheme://host[:port]``), or ``Sec-Fetch-Site`` is
    ``cross-site`` or ``same-site``. Requests without either header (older browsers,
    scripts) are left to the token."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    return origin is None or origin == own
