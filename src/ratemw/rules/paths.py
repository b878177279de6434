"""Path patterns of ``match.path``: exact paths, templates, globs and regexes.

* ``/login`` is exact;
* ``/api/reports/{id}`` and ``/api/*/items`` match one non-empty segment in
  place of ``{id}`` or ``*``;
* ``/search/**`` matches ``/search`` and anything below it (``**`` only last);
* ``re:^/v[0-9]+/.*$`` is a regular expression, matched against the whole path.

A request path matches if any of its forms (:func:`ratemw.rules.canonical.path_forms`:
as handed over, slashes merged, dot segments resolved) does; empty segments mean
nothing, so ``/login`` and ``/login/`` match the same requests. Regular expressions run
on RE2, whose time is linear in the path, so no rule can make a request pin a worker.

Validation and the compiler both use :func:`parse_path`; :meth:`PathPattern.matches`
is the reference matcher the compiled trie is tested against.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from ratemw.rules.canonical import path_forms

__all__ = ["PathPattern", "Regex", "compile_regex", "parse_path"]

_TEMPLATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

try:
    # Loaded by name: google-re2 ships no type information.
    _re2: Any = importlib.import_module("re2")
except ImportError:  # pragma: no cover - a core dependency; refuse rather than backtrack
    _re2 = None


class Regex(Protocol):
    """A compiled ``re:`` path (an RE2 regexp)."""

    @property
    def pattern(self) -> str: ...

    def fullmatch(self, text: str, /) -> object | None: ...


def compile_regex(source: str) -> Regex:
    """Compile ``source`` with RE2 (linear-time: no backreferences or lookaround).

    Raises ``ValueError`` with RE2's reason for a pattern it refuses, and when
    google-re2 is not installed: Python's backtracking engine is never a fallback.
    """
    if _re2 is None:
        raise ValueError(
            f"regular expression {source!r} needs the google-re2 package "
            "(pip install google-re2), which runs it in linear time"
        )
    options = _re2.Options()
    options.log_errors = False  # the reason reaches the user as a rules problem instead
    try:
        regex: Regex = _re2.compile(source, options)
    except _re2.error as exc:
        reason = exc.args[0] if exc.args else exc
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise ValueError(
            f"invalid regular expression {source!r}: {reason} (paths use RE2 syntax: "
            "no backreferences, lookaround or possessive quantifiers)"
        ) from None
    return regex


@dataclass(frozen=True, slots=True)
class PathPattern:
    """A parsed ``match.path``.

    ``segments`` is the path split on ``/`` without the leading slash (``/``
    gives ``()``); for ``kind == "pattern"`` an item is a literal, ``"*"`` (one
    segment, written ``*`` or ``{name}``) or ``"**"`` (the rest, last only).
    Empty segments are dropped (``/a//b/`` has the segments of ``/a/b``).
    ``regex`` is set for ``kind == "regex"`` and used with ``fullmatch``.
    """

    text: str
    kind: Literal["exact", "pattern", "regex"]
    segments: tuple[str, ...]
    regex: Regex | None = None

    def matches(self, path: str) -> bool:
        """Whether the request path ``path`` (starting with ``/``) matches, in any of
        its :func:`~ratemw.rules.canonical.path_forms`."""
        forms = path_forms(path)
        if self.regex is not None:
            return any(self.regex.fullmatch(form) is not None for form in forms)
        # A path without its leading "/" is matched as if it had one, as Werkzeug does.
        return any(_match_segments(self.segments, split_path(form)) for form in forms)

    def covers(self, other: PathPattern) -> bool:
        """Whether every path ``other`` matches is also matched by ``self``.

        Conservative: ``False`` means "not proven", e.g. for two different
        regular expressions.
        """
        if self.text == other.text:
            return True
        if other.kind == "regex":
            return False
        if self.kind == "regex":
            # Only a single concrete path can be checked against a regex.
            return other.kind == "exact" and self.matches(other.text)
        return _covers_segments(self.segments, other.segments)


def split_path(path: str) -> tuple[str, ...]:
    """The non-empty segments of ``path``."""
    return tuple(s for s in path.split("/") if s)


def _match_segments(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    for i, seg in enumerate(pattern):
        if seg == "**":
            return True
        if i >= len(parts):
            return False
        if seg != "*" and seg != parts[i]:
            return False
    return len(parts) == len(pattern)


def _covers_segments(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    # "**" only ever comes last, so a left-to-right walk needs no backtracking.
    for i, seg in enumerate(a):
        if seg == "**":
            return True
        if i >= len(b) or b[i] == "**":
            return False
        if seg == "*":
            if b[i] == "":
                return False
        elif seg != b[i]:
            return False
    return len(a) == len(b)


def parse_path(text: str) -> PathPattern:
    """Parse a ``match.path`` value.

    Raises ``ValueError`` with the reason: not starting with ``/`` (unless
    ``re:``), a regular expression RE2 refuses, ``**`` before the last segment,
    a template that is not a whole segment, unbalanced braces, an empty or
    invalid template name, or ``*`` inside a segment.
    """
    if not isinstance(text, str):
        raise ValueError(f"a path must be a string, got {type(text).__name__}")
    if text.startswith("re:"):
        regex = compile_regex(text[3:])
        return PathPattern(text=text, kind="regex", segments=(), regex=regex)
    if not text.startswith("/"):
        raise ValueError(f"path {text!r} must start with '/' (or 're:' for a regular expression)")
    raw = split_path(text)
    segments: list[str] = []
    wildcard = False
    for i, seg in enumerate(raw):
        if "{" in seg or "}" in seg:
            segments.append(_template(text, seg))
            wildcard = True
        elif seg in ("*", "**"):
            if seg == "**" and i != len(raw) - 1:
                raise ValueError(f"'**' is only allowed as the last segment of path {text!r}")
            segments.append(seg)
            wildcard = True
        elif "*" in seg:
            raise ValueError(
                f"'*' must be a whole segment in path {text!r}, got {seg!r} "
                "(use 're:' for partial matches)"
            )
        else:
            segments.append(seg)
    return PathPattern(text=text, kind="pattern" if wildcard else "exact", segments=tuple(segments))


def _template(text: str, seg: str) -> str:
    depth = 0
    for ch in seg:
        depth += 1 if ch == "{" else -1 if ch == "}" else 0
        if depth not in (0, 1):
            raise ValueError(f"unbalanced braces in segment {seg!r} of path {text!r}")
    if depth != 0:
        raise ValueError(f"unbalanced braces in segment {seg!r} of path {text!r}")
    if not (seg.startswith("{") and seg.endswith("}") and seg.count("{") == 1):
        raise ValueError(
            f"a template must be a whole segment like '{{id}}', got {seg!r} in path {text!r} "
            "(use 're:' for partial matches)"
        )
    name = seg[1:-1].strip()
    if not name:
        raise ValueError(f"empty template name '{{}}' in path {text!r}")
    if not _TEMPLATE_NAME.fullmatch(name):
        raise ValueError(f"invalid template name {name!r} in path {text!r}")
    return "*"
