"""Canonical forms of request paths and hosts, so that rules see what routers see.

A rule must apply to every request that a framework's router sends to the view the
rule protects. Routers forgive more than exact string comparison does: Werkzeug merges
repeated slashes, Python's ``http.server`` (Django's ``runserver``) collapses leading
ones, a route regex ending in ``$`` (Starlette, Django's ``re_path``) accepts a trailing
newline, and a view may be reachable with or without a trailing slash. So a request
path is matched in several forms (:func:`path_forms`) and a rule applies if any of them
matches: being more permissive than a router only ever limits a request that would have
got a 404, while being less permissive is a bypass.

This runs once per distinct path (the path index memoises it), never per request.
"""

from __future__ import annotations

__all__ = ["canonical_host", "canonical_path", "path_forms", "squash_path"]

# C0 controls, space, DEL and C1 controls: what a router's "$" (trailing "\n") or a
# lenient server might drop from the end of a segment. Dropping more is harmless.
_JUNK = "".join(chr(c) for c in (*range(0x21), *range(0x7F, 0xA0)))


def _segments(path: str) -> list[str]:
    # Empty segments ("//", a trailing "/") and trailing junk carry no meaning to us.
    return [s for s in (part.rstrip(_JUNK) for part in path.split("/")) if s]


def squash_path(path: str) -> str:
    """``path`` with repeated and trailing slashes merged and control characters and
    spaces dropped from the end of each segment; dot segments are kept (a ``**``
    route such as ``/files/<path:p>`` is served ``/files/../x`` as is)."""
    return "/" + "/".join(_segments(path))


def canonical_path(path: str) -> str:
    """:func:`squash_path` with ``.`` and ``..`` segments resolved (RFC 3986 5.2.4;
    ``..`` never climbs above ``/``). Idempotent, and never raises."""
    out: list[str] = []
    for seg in _segments(path):
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    return "/" + "/".join(out)


def path_forms(path: str) -> tuple[str, ...]:
    """The forms of a request path that rules are matched against, without repeats:
    the path as handed over, :func:`squash_path` and :func:`canonical_path`."""
    squashed = squash_path(path)
    canonical = canonical_path(path)
    forms = [path]
    if squashed != path:
        forms.append(squashed)
    if canonical != squashed:
        forms.append(canonical)
    return tuple(forms)


def canonical_host(host: str) -> str:
    """``host`` lower-cased, without a port (``[::1]:8000`` gives ``[::1]``) and without
    trailing dots (the absolute form ``example.com.`` names ``example.com``; Django
    serves it). A ``*.`` wildcard keeps its star."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            host = host[: end + 1]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")
