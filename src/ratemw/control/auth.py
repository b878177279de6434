"""Bearer tokens and roles of the control plane.

Tokens are never stored: a tokens file (YAML or JSON) or the ``RATEMW_CONTROL_TOKENS``
environment variable (the same document, inline) maps the SHA-256 of each token to a
principal and a role::

    tokens:
      "sha256:5e884898da28...": {principal: alice, role: editor}
      "sha256:6b86b273ff34...": {principal: bob, role: approver}

A presented token is hashed and compared with every stored digest in constant time
(:func:`hmac.compare_digest`). ``ratemw control-token`` makes a token and its entry.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ratemw.control import ControlError

__all__ = [
    "ENV_VAR",
    "PERMISSIONS",
    "ROLES",
    "Principal",
    "TokenTable",
    "bearer_token",
    "load_tokens",
    "new_token",
    "token_digest",
]

ENV_VAR = "RATEMW_CONTROL_TOKENS"
ROLES = ("viewer", "editor", "approver", "admin")
# What each action needs. Admin may do everything; approvers do not propose, and
# editors do not approve, so proposing and approving stay separate duties.
PERMISSIONS: Mapping[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "propose": frozenset({"editor", "admin"}),
    "approve": frozenset({"approver", "admin"}),
    "deploy": frozenset({"admin"}),
}
_DIGEST = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who made a request, and the role their token grants."""

    name: str
    role: str

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


def token_digest(token: str) -> str:
    """The ``sha256:<hex>`` form under which ``token`` is listed."""
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe)."""
    return "rmw_" + secrets.token_urlsafe(32)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


class TokenTable:
    """Digest -> principal; :meth:`authenticate` maps a presented token to a principal."""

    def __init__(self, entries: Mapping[str, Principal] | None = None) -> None:
        self._entries: dict[bytes, Principal] = {}
        for digest, principal in (entries or {}).items():
            match = _DIGEST.match(digest)
            if match is None:
                raise ControlError(f"not a token digest (want sha256:<64 hex>): {digest!r}")
            if principal.role not in ROLES:
                raise ControlError(f"unknown role {principal.role!r}; use one of {ROLES}")
            self._entries[match.group(1).lower().encode("ascii")] = principal

    def __len__(self) -> int:
        return len(self._entries)

    @classmethod
    def from_text(cls, text: str, source: str) -> TokenTable:
        """Parse a tokens document (YAML or JSON); raises :class:`ControlError`."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ControlError(f"{source}: not YAML or JSON: {exc}") from None
        if isinstance(data, Mapping) and "tokens" in data:
            data = data["tokens"]
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ControlError(f"{source}: want a mapping of token digests to principals")
        entries: dict[str, Principal] = {}
        for digest, spec in data.items():
            entries[str(digest)] = _principal(spec, f"{source}: {digest}")
        try:
            return cls(entries)
        except ControlError as exc:
            raise ControlError(f"{source}: {exc}") from None

    def merged(self, other: TokenTable) -> TokenTable:
        table = TokenTable()
        table._entries = {**self._entries, **other._entries}
        return table

    def authenticate(self, token: str | None) -> Principal | None:
        """The principal of ``token``, or None when it is missing or unknown."""
        if not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8")).hexdigest().encode("ascii")
        found: Principal | None = None
        for digest, principal in self._entries.items():
            if hmac.compare_digest(presented, digest):
                found = principal  # keep looping: the time does not depend on the position
        return found

    def principal_of(self, digest: str) -> Principal | None:
        """The principal listed under ``digest`` (:func:`token_digest` of a token), or
        None: a console session names its token by digest, so that a token taken out of
        the table ends its sessions too."""
        match = _DIGEST.match(digest)
        if match is None:
            return None
        wanted = match.group(1).lower().encode("ascii")
        found: Principal | None = None
        for stored, principal in self._entries.items():
            if hmac.compare_digest(wanted, stored):
                found = principal
        return found


def _principal(spec: Any, where: str) -> Principal:
    if not isinstance(spec, Mapping):
        raise ControlError(f"{where}: want {{principal: NAME, role: ROLE}}")
    name, role = spec.get("principal"), spec.get("role")
    extra = set(spec) - {"principal", "role"}
    if not isinstance(name, str) or not name or not isinstance(role, str) or extra:
        raise ControlError(f"{where}: want {{principal: NAME, role: ROLE}}")
    if role not in ROLES:
        raise ControlError(f"{where}: unknown role {role!r}; use one of {', '.join(ROLES)}")
    return Principal(name, role)


def load_tokens(path: str | os.PathLike[str] | None, environ: Mapping[str, str]) -> TokenTable:
    """Tokens from the file at ``path`` plus ``RATEMW_CONTROL_TOKENS`` in ``environ``."""
    table = TokenTable()
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ControlError(f"cannot read the tokens file {path}: {exc.strerror}") from None
        table = TokenTable.from_text(text, str(path))
    inline = environ.get(ENV_VAR)
    if inline:
        table = table.merged(TokenTable.from_text(inline, ENV_VAR))
    return table
