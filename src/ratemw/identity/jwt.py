"""Bearer JWT verification: trusted ``user`` / ``tenant`` / ``tier`` from signed claims.

:class:`JWTVerifier` reads ``Authorization: Bearer <token>``, verifies the token
with PyJWT using only the configured algorithms and keys, and returns a copy of
the :class:`~ratemw.request.RequestInfo` with the verified claims. Anything that
does not verify leaves the request as it was, so an unverified token can never
choose a tier. Request data never makes it raise.

PyJWT is imported in the constructor (``pip install 'ratemw[jwt]'``), never at
module import. The raw token is never logged, stored or put in an error: the
cache is keyed by a keyed BLAKE2b digest of it.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from ratemw._deps import require
from ratemw.identity.jwt_keys import load_keys

if TYPE_CHECKING:
    from ratemw.request import RequestInfo
    from ratemw.rules.model import JWTConfig
    from ratemw.types import Clock

__all__ = ["MAX_TOKEN_LENGTH", "JWTVerifier"]

#: longer bearer tokens are refused without being parsed.
MAX_TOKEN_LENGTH = 8 * 1024
#: at most this many verified tokens are cached (the cache is cleared when full).
CACHE_SIZE = 10_000
#: at most this many refused tokens are remembered, in a separate cache, so a
#: flood of garbage cannot evict the entries of real clients.
INVALID_CACHE_SIZE = 1_024
#: a verified token without ``exp`` is re-verified after this many seconds.
MAX_CACHE_SECONDS = 300.0
#: a refused token is refused from the cache for this many seconds.
INVALID_CACHE_SECONDS = 5.0

# JWS compact serialisation: three base64url segments; the signature is never empty,
# so unsigned (``alg: none``) tokens are refused before PyJWT sees them.
_COMPACT = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


@dataclass(frozen=True, slots=True)
class _Verified:
    claims: Mapping[str, object]
    user: str | None
    tenant: str | None
    tier: str | None


def _identity_claim(value: object) -> str | None:
    """A user or tenant claim as a string; ``None`` for missing, empty or structured values."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _numeric_date(payload: Mapping[str, object], name: str) -> int | None:
    """``exp`` / ``nbf`` / ``iat`` read the way PyJWT reads them; ``ValueError`` when unusable."""
    if name not in payload:
        return None
    value = payload[name]
    if isinstance(value, str | int | float):  # bool is an int: PyJWT accepts it too
        try:
            return int(value)
        except (ValueError, OverflowError):
            pass
    raise ValueError(f"{name} must be a number")


def _fill(have: str | None, new: str | None) -> str | None:
    """The adapter's value when it set one, else the claim's."""
    return have if have or new is None else new


class JWTVerifier:
    """Verifies bearer JWTs per a :class:`~ratemw.rules.model.JWTConfig`.

    Keys: ``HS*`` algorithms use ``secret`` (else the environment variable
    ``config.secret_env``); the others use ``key`` (a PEM string/bytes or a
    ``cryptography`` public key; else the PEM file ``config.public_key_file``,
    read once here). A token is verified only with the key of its own
    algorithm family, so an HMAC token signed with the public key is refused.

    ``clock``: when given, ``exp`` / ``nbf`` / ``iat`` are checked against
    ``clock.time()`` (epoch seconds) instead of the wall clock.

    Raises :class:`~ratemw.identity.jwt_keys.JWTConfigError` for unusable settings and
    :class:`~ratemw.errors.MissingDependency` when PyJWT is not installed.
    """

    def __init__(
        self,
        config: JWTConfig,
        *,
        clock: Clock | None = None,
        secret: str | bytes | None = None,
        key: object | None = None,
    ) -> None:
        self.config = config
        self._jwt: ModuleType = require("jwt", extra="jwt", purpose="JWT identities")
        self._clock = clock
        self._leeway = float(config.leeway_seconds)
        # PyJWT checks times against the wall clock; with an injected clock we do it.
        self._options: dict[str, Any] = (
            {"verify_exp": False, "verify_nbf": False, "verify_iat": False}
            if clock is not None
            else {}
        )
        self._by_alg = load_keys(self._jwt, config, secret, key)
        groups: dict[int, tuple[object, list[str]]] = {}
        for alg, prepared in self._by_alg.items():
            groups.setdefault(id(prepared), (prepared, []))[1].append(alg)
        # One key for every algorithm: one decode call. Several: pick by the header's alg.
        self._single: tuple[object, list[str]] | None = (
            next(iter(groups.values())) if len(groups) == 1 else None
        )
        self._digest_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, _Verified]] = {}
        self._invalid: dict[bytes, float] = {}

    # -- verification -----------------------------------------------------

    def _now(self) -> float:
        clock = self._clock
        return clock.time() if clock is not None else time.time()

    @staticmethod
    def bearer_token(headers: Mapping[str, str]) -> str | None:
        """The token of an ``Authorization: Bearer`` header, or ``None``.

        ``None`` too when the header is too long or the token is not three
        base64url segments (non-ASCII, repeated headers joined with a comma, ...).
        """
        value = headers.get("authorization")
        if not isinstance(value, str) or len(value) > MAX_TOKEN_LENGTH + 64:
            return None
        parts = value.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            return None
        token = parts[1].strip()
        if len(token) > MAX_TOKEN_LENGTH or not _COMPACT.fullmatch(token):
            return None
        return token

    def verify(self, token: str) -> Mapping[str, object] | None:
        """The verified claims of ``token`` (read-only), or ``None``; never raises."""
        entry = self._verified(token)
        return entry.claims if entry is not None else None

    def enrich(self, info: RequestInfo) -> RequestInfo:
        """``info`` with verified claims, and ``user`` / ``tenant`` / ``tier`` from them
        where the adapter did not set them; ``info`` itself when there is no valid token."""
        try:
            token = self.bearer_token(info.headers)
        except Exception:
            return info
        if token is None:
            return info
        entry = self._verified(token)
        if entry is None:
            return info
        return replace(
            info,
            claims=entry.claims,
            user=_fill(info.user, entry.user),
            tenant=_fill(info.tenant, entry.tenant),
            tier=_fill(info.tier, entry.tier),
        )

    def _verified(self, token: str) -> _Verified | None:
        if (
            not isinstance(token, str)
            or len(token) > MAX_TOKEN_LENGTH
            or not _COMPACT.fullmatch(token)
        ):
            return None
        digest = hashlib.blake2b(
            token.encode("ascii"), key=self._digest_key, digest_size=16
        ).digest()
        now = self._now()
        hit = self._cache.get(digest)
        if hit is not None:
            if now < hit[0]:
                return hit[1]
            self._cache.pop(digest, None)
        refused_until = self._invalid.get(digest)
        if refused_until is not None:
            if now < refused_until:
                return None
            self._invalid.pop(digest, None)

        try:
            payload = self._decode(token, now)
            entry = _Verified(
                claims=MappingProxyType(payload),
                user=_identity_claim(payload.get(self.config.user_claim)),
                tenant=_identity_claim(payload.get(self.config.tenant_claim)),
                tier=self._tier(payload.get(self.config.tier_claim)),
            )
            exp = _numeric_date(payload, "exp")
        except Exception as exc:
            # A token that is not yet valid may become valid any second: don't remember it.
            if not isinstance(exc, self._jwt.ImmatureSignatureError):
                invalid = self._invalid
                if len(invalid) >= INVALID_CACHE_SIZE:
                    invalid.clear()
                invalid[digest] = now + INVALID_CACHE_SECONDS
            return None

        until = now + MAX_CACHE_SECONDS
        if exp is not None:
            until = min(until, float(exp))
        if until > now:
            cache = self._cache
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[digest] = (until, entry)
        return entry

    @staticmethod
    def _tier(value: object) -> str | None:
        return value if isinstance(value, str) and value else None

    def _decode(self, token: str, now: float) -> dict[str, Any]:
        jwt = self._jwt
        single = self._single
        if single is not None:
            prepared, algorithms = single
        else:
            alg = jwt.get_unverified_header(token).get("alg")
            prepared = self._by_alg.get(alg) if isinstance(alg, str) else None
            if prepared is None:
                raise ValueError("algorithm not allowed")
            algorithms = [alg]
        payload: dict[str, Any] = jwt.decode(
            token,
            prepared,
            algorithms=algorithms,
            audience=self.config.audience,
            issuer=self.config.issuer,
            leeway=self._leeway,
            options=self._options,
        )
        if self._clock is not None:
            self._check_times(payload, now)
        return payload

    def _check_times(self, payload: Mapping[str, object], now: float) -> None:
        leeway = self._leeway
        exp = _numeric_date(payload, "exp")
        if exp is not None and exp <= now - leeway:
            raise self._jwt.ExpiredSignatureError("expired")
        nbf = _numeric_date(payload, "nbf")
        if nbf is not None and nbf > now + leeway:
            raise self._jwt.ImmatureSignatureError("not yet valid (nbf)")
        iat = _numeric_date(payload, "iat")
        if iat is not None and iat > now + leeway:
            raise self._jwt.ImmatureSignatureError("not yet valid (iat)")
