"""Redis key naming (LEASES.md §4), the one copy both store twins use.

``ratemw:<app>:{<policy_id>|<identity digest>}:<kind>``: everything of one (policy,
identity) pair shares a Cluster hash tag. The identity is a keyed BLAKE2b digest of
``repr(identity_key)``, so request data (braces, NUL, huge or invalid UTF-8 strings) can
neither break the tag nor grow the key, and a raw secret never reaches Redis.
"""

from __future__ import annotations

import hashlib
import os
import re

__all__ = ["DIGEST_CHARS", "KeyBuilder", "identity_digest", "safe_name"]

#: Length of the identity digest in hex characters.
DIGEST_CHARS = 32
_DEFAULT_HASH_KEY = b"ratemw:store:v1"
_SAFE = re.compile(r"[A-Za-z0-9_.@/-]{1,64}")
_UNSAFE_CHAR = re.compile(r"[^A-Za-z0-9_.@/-]")


def _hash_key(hash_key: bytes | str | None) -> bytes:
    key = hash_key if hash_key is not None else os.environ.get("RATEMW_HASH_KEY", "")
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    key = key or _DEFAULT_HASH_KEY
    # BLAKE2b keys are at most 64 bytes; longer secrets are condensed, not truncated.
    return key if len(key) <= 64 else hashlib.blake2b(key).digest()


def identity_digest(identity_key: object, key: bytes) -> str:
    """Keyed digest of ``repr(identity_key)``: always :data:`DIGEST_CHARS` hex characters."""
    data = repr(identity_key).encode("utf-8", "backslashreplace")
    return hashlib.blake2b(data, key=key, digest_size=DIGEST_CHARS // 2).hexdigest()


def safe_name(name: str) -> str:
    """``name`` itself when short and plain, else a readable prefix plus a digest.

    The result never contains ``{``, ``}`` or ``:``; the ``~`` marks rewritten names so
    they cannot collide with plain ones.
    """
    if _SAFE.fullmatch(name):
        return name
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{_UNSAFE_CHAR.sub('_', name[:24])}~{digest}"


class KeyBuilder:
    """Builds the keys of one application.

    ``hash_key`` keys the identity digest (default: ``RATEMW_HASH_KEY``); every process
    sharing a Redis must use the same one.
    """

    __slots__ = ("_key", "prefix")

    def __init__(self, app: str = "default", *, hash_key: bytes | str | None = None) -> None:
        self.prefix = f"ratemw:{safe_name(app)}:"
        self._key = _hash_key(hash_key)

    def key(self, policy_id: str, identity_key: object, kind: str) -> str:
        """Key of ``kind`` (``g`` bucket, ``w`` window, ``c`` slots) for one pair."""
        digest = identity_digest(identity_key, self._key)
        return f"{self.prefix}{{{safe_name(policy_id)}|{digest}}}:{safe_name(kind)}"

    def procs(self) -> str:
        """The process registry key."""
        return f"{self.prefix}{{meta}}:procs"
