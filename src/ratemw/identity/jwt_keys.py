"""The keys a JWT verifier trusts: one per configured algorithm, checked up front.

``HS*`` algorithms take the secret (passed in, else the environment variable
``secret_env``); the others take one public key (passed in, else the PEM file
``public_key_file``, read once and bounded). Unsigned algorithms are refused, a private
key is reduced to its public half, and a short key is warned about here, once, rather
than by PyJWT on every token. Key material never appears in an error.
"""

from __future__ import annotations

import os
import warnings
from types import ModuleType
from typing import TYPE_CHECKING, Any

from ratemw.errors import RatemwError

if TYPE_CHECKING:
    from ratemw.rules.model import JWTConfig

__all__ = ["JWTConfigError", "load_keys"]

_HMAC_PREFIX = "HS"


class JWTConfigError(RatemwError):
    """The JWT settings cannot be used: missing secret, unreadable key, bad algorithm."""


def load_keys(
    jwt: ModuleType, config: JWTConfig, secret: str | bytes | None, key: object | None
) -> dict[str, object]:
    """The prepared key of each of ``config.algorithms`` (``jwt``: the PyJWT module).

    Raises :class:`JWTConfigError` for an unusable algorithm, secret or key.
    """
    algorithms = tuple(config.algorithms)
    if not algorithms:
        raise JWTConfigError("identity.jwt.algorithms is empty: name at least one algorithm")
    hmac_key: object | None = None
    public_key: object | None = None
    source = ""
    prepared: dict[str, object] = {}
    for alg in algorithms:
        if not isinstance(alg, str) or not alg or alg.lower() == "none":
            raise JWTConfigError(
                f"identity.jwt.algorithms: {alg!r} is not allowed (tokens must be signed)"
            )
        try:
            alg_obj = jwt.get_algorithm_by_name(alg)
        except NotImplementedError:
            raise JWTConfigError(
                f"identity.jwt.algorithms: {alg} is unknown or needs the 'cryptography' "
                "package (pip install 'ratemw[jwt]')"
            ) from None
        if alg.startswith(_HMAC_PREFIX):
            if hmac_key is None:
                raw, source = _secret(config, secret)
                hmac_key = _prepare(jwt, alg_obj, alg, raw, source)
            prepared[alg] = hmac_key
        else:
            if public_key is None:
                raw_key, source = _public_key(config, key)
                public_key = _prepare(jwt, alg_obj, alg, raw_key, source)
            else:
                # Every asymmetric algorithm must accept the one key we have.
                _prepare(jwt, alg_obj, alg, public_key, source)
            prepared[alg] = public_key
    return prepared


def _secret(config: JWTConfig, secret: str | bytes | None) -> tuple[object, str]:
    if secret is not None:
        if not secret:
            raise JWTConfigError("the JWT secret passed to JWTVerifier is empty")
        return secret, "the secret passed to JWTVerifier"
    name = config.secret_env
    if not name:
        raise JWTConfigError(
            "identity.jwt: HMAC algorithms (HS256, ...) need secret_env naming the "
            "environment variable that holds the secret"
        )
    value = os.environ.get(name)
    if not value:
        raise JWTConfigError(
            f"identity.jwt.secret_env: environment variable {name} is not set or empty"
        )
    return value, f"environment variable {name}"


def _public_key(config: JWTConfig, key: object | None) -> tuple[object, str]:
    if key is not None:
        return key, "the key passed to JWTVerifier"
    path = config.public_key_file
    if not path:
        raise JWTConfigError(
            "identity.jwt: asymmetric algorithms (RS256, ES256, ...) need public_key_file"
        )
    try:
        with open(path, "rb") as fh:
            data = fh.read(1024 * 1024)
    except OSError as exc:
        raise JWTConfigError(
            f"identity.jwt.public_key_file: cannot read {path}: {exc.strerror or exc}"
        ) from None
    return data, f"public key file {path}"


def _prepare(jwt: ModuleType, alg_obj: Any, alg: str, raw: object, source: str) -> object:
    try:
        prepared: object = alg_obj.prepare_key(raw)
    except Exception as exc:
        # Never echo the key material; the exception type and source are enough.
        raise JWTConfigError(
            f"identity.jwt: the key from {source} cannot be used for {alg} ({type(exc).__name__})"
        ) from None
    public = getattr(prepared, "public_key", None)
    if callable(public) and not alg.startswith(_HMAC_PREFIX):
        prepared = public()  # a private key file: verify with its public half only
    # PyJWT warns about a short key on every decode; say it once, here, where
    # ``-W error`` makes it a construction error instead of refusing every token.
    check = getattr(alg_obj, "check_key_length", None)
    problem = check(prepared) if callable(check) else None
    if problem:
        category = getattr(jwt, "InsecureKeyLengthWarning", UserWarning)
        warnings.warn(f"identity.jwt: key from {source}: {problem}", category, stacklevel=4)
    return prepared
