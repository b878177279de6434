"""Signed session cookies: who is signed in, until when; sign-out revokes.

A cookie is ``<payload>.<signature>``: the payload is base64url JSON of a random session
id, the digest under which the token is listed, and the expiry; the signature is
HMAC-SHA256 over the payload with a key derived from the service's secret. The token
itself is never stored. Each request looks the digest up again, so a token taken out of
the tokens table ends its sessions. A signed-out session id is remembered until its
expiry (in memory, bounded), so a copied cookie dies with the sign-out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["COOKIE", "MAX_COOKIE_CHARS", "Session", "Sessions", "b64", "derive_key"]

COOKIE = "ratemw_console"
MAX_COOKIE_CHARS = 1024  # ours are ~200: anything longer is not ours
_MAX_REVOKED = 100_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def derive_key(secret: bytes, purpose: str) -> bytes:
    """One key per use of the secret (sessions, CSRF), so that no value signed for one
    purpose verifies for another."""
    return hmac.new(secret, f"ratemw console {purpose}".encode(), hashlib.sha256).digest()


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser: its id, its token's digest and when it ends (epoch s)."""

    sid: str
    digest: str
    expires: int


class Sessions:
    """Issues, reads and revokes session cookies signed with ``secret``."""

    def __init__(self, secret: bytes, seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._key = derive_key(secret, "session")
        self.seconds = seconds
        self._clock = clock
        self._revoked: dict[str, int] = {}
        self._lock = threading.Lock()

    def _sign(self, payload: str) -> str:
        return b64(hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest())

    def issue(self, digest: str) -> tuple[Session, str]:
        """A new session for the token listed under ``digest``, and its cookie value."""
        session = Session(b64(os.urandom(18)), digest, int(self._clock()) + self.seconds)
        data = {"s": session.sid, "d": session.digest, "e": session.expires}
        payload = b64(json.dumps(data, separators=(",", ":")).encode("utf-8"))
        return session, f"{payload}.{self._sign(payload)}"

    def read(self, cookie: str | None) -> Session | None:
        """The session of a cookie value: None unless signed by us, unexpired, not
        revoked."""
        if not cookie or len(cookie) > MAX_COOKIE_CHARS or cookie.count(".") != 1:
            return None
        payload, signature = cookie.split(".")
        if not hmac.compare_digest(signature.encode("ascii", "replace"),
                                   self._sign(payload).encode("ascii")):  # fmt: skip
            return None
        try:
            data = json.loads(_unb64(payload))
            session = Session(str(data["s"]), str(data["d"]), int(data["e"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.expires <= self._clock():
            return None
        with self._lock:
            if session.sid in self._revoked:
                return None
        return session

    def revoke(self, session: Session) -> None:
        """End ``session`` now, whoever holds a copy of its cookie."""
        now = self._clock()
        with self._lock:
            if len(self._revoked) >= _MAX_REVOKED:
                self._revoked = {s: e for s, e in self._revoked.items() if e > now}
                if len(self._revoked) >= _MAX_REVOKED:  # still full: the oldest go
                    for sid in list(self._revoked)[: _MAX_REVOKED // 10]:
                        del self._revoked[sid]
            self._revoked[session.sid] = session.expires
