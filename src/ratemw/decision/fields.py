"""The text of the rate-limit fields: sf-strings, ``RateLimit-Policy`` items, waits in
whole seconds, and header pairs encoded for ASGI."""

from __future__ import annotations

import math

__all__ = [
    "PROBLEM_TYPE",
    "REDUCED_CAPACITY_TYPE",
    "encode_headers",
    "policy_field",
    "retry_seconds",
    "sf_string",
]

PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"
#: a brownout's rejection (draft-ietf-httpapi-ratelimit-headers, "temporary reduced capacity")
REDUCED_CAPACITY_TYPE = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
_MAX_RETRY_SECONDS = 366 * 86400.0


def retry_seconds(wait: float) -> int:
    """A wait as ``Retry-After`` (and a refusing policy's ``t``) says it: whole seconds,
    at least 1, never earlier than the wait."""
    # Waits carry a microsecond of slack against float rounding: not worth a second.
    return max(1, math.ceil(min(wait, _MAX_RETRY_SECONDS) - 1e-5))


_NAMES: dict[str, bytes] = {}  # header names seen, encoded once (a handful of them)


def encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs as ASGI sends them: lower-case names, latin-1 bytes."""
    out = []
    for name, value in headers:  # a loop: a comprehension is a function call in 3.11
        raw = _NAMES.get(name)
        if raw is None:
            raw = name.lower().encode("latin-1")
            if len(_NAMES) < 64:
                _NAMES[name] = raw
        out.append((raw, value.encode("latin-1")))
    return out


def sf_string(value: str) -> str:
    """``value`` as an RFC 8941 sf-string (``"..."`` with ``\\`` and ``"`` escaped).

    Raises ``ValueError`` for a character an sf-string cannot hold (anything
    outside printable ASCII, CR, LF and NUL among them): no rule name can put a
    line break into a response header. Policies call it once, when compiled.
    """
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{value[:60]!r} cannot be written in a header (RFC 8941 sf-string)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_field(name: str, quota: int, window_seconds: float) -> str:
    """One item of ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers-10).

    Raises ``ValueError`` when ``name`` cannot be an sf-string (:func:`sf_string`).
    """
    w = window_seconds
    return f"{sf_string(name)};q={quota};w={int(w) if w == int(w) else f'{w:g}'}"
