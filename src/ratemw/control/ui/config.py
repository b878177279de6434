"""How the console is configured: the signing secret, cookie flags and body caps."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass

from ratemw.control import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PROPOSAL_BYTES, ControlError

__all__ = ["DEFAULT_SESSION_SECONDS", "SECRET_ENV", "SECURE_ENV", "ConsoleConfig"]

SECRET_ENV = "RATEMW_CONSOLE_SECRET"
SECURE_ENV = "RATEMW_CONSOLE_SECURE_COOKIE"
DEFAULT_SESSION_SECONDS = 8 * 3600
_MAX_SESSION_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """The console's settings.

    ``secret`` signs session cookies and CSRF tokens (HMAC-SHA256); by default a random
    one per process, so sessions end when the service restarts. ``secure_cookie``:
    ``True`` always marks the cookie ``Secure``, ``None`` does so when the request came
    over TLS. Sessions last ``session_seconds``.
    """

    secret: bytes
    secure_cookie: bool | None = None
    session_seconds: int = DEFAULT_SESSION_SECONDS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_proposal_bytes: int = DEFAULT_MAX_PROPOSAL_BYTES

    def __post_init__(self) -> None:
        if len(self.secret) < 16:
            raise ControlError("the console secret must be at least 16 bytes")
        if not 60 <= self.session_seconds <= _MAX_SESSION_SECONDS:
            raise ControlError(
                f"console sessions last 60 to {_MAX_SESSION_SECONDS} seconds, "
                f"not {self.session_seconds}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **options: int) -> ConsoleConfig:
        """``RATEMW_CONSOLE_SECRET`` (any text of 16+ characters, never shown) and
        ``RATEMW_CONSOLE_SECURE_COOKIE=1``; the rest from ``options``."""
        text = environ.get(SECRET_ENV, "")
        if text and len(text) < 16:
            raise ControlError(f"{SECRET_ENV} must be at least 16 characters")
        # Stretched to a fixed-size key: the text itself is never kept.
        secret = hashlib.sha256(text.encode("utf-8")).digest() if text else os.urandom(32)
        secure = environ.get(SECURE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
        return cls(secret, True if secure else None, **options)
