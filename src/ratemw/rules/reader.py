"""A checked reader of parsed data: mapping keys, value types and notation.

Each check that fails records a :class:`~ratemw.errors.Problem` located in the
document and returns ``None``, so that one pass reports every problem; the rules
file's own schema (:mod:`ratemw.rules.schema`) is written with these helpers.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ratemw.errors import Problem
from ratemw.rules._source import Document, Path
from ratemw.rules.model import Rate
from ratemw.rules.notation import parse_duration, parse_rate

__all__ = ["LISTS", "Conv", "DataReader", "describe"]

T = TypeVar("T")

LISTS = (list, tuple)  # tuples too, for rules written as Python data
#: a field's converter: ``(value, path, what)`` -> the typed value, or ``None``
Conv = Callable[[Any, Path, str], Any]


class DataReader:
    """Typed conversion of a parsed document; every problem lands in ``problems``."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def error(self, path: Path, reason: str, *, key: bool = False) -> None:
        line, col = self.doc.locate(path, key=key)
        self.problems.append(Problem(self.doc.source, line, col, reason))

    # -- generic helpers ---------------------------------------------------

    def mapping(
        self, value: Any, path: Path, allowed: Sequence[str] | None, what: str
    ) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path, f"{what} must be a mapping, got {describe(value)}")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error((*path, str(key)), f"{what}: key {key!r} must be a string", key=True)
            elif allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                mean = f"; did you mean {hint[0]!r}?" if hint else ""
                self.error((*path, key), f"unknown key {key!r} in {what}{mean}", key=True)
            else:
                out[key] = item
        return out

    def section(
        self, value: Any, path: Path, prefix: str, fields: Mapping[str, Conv]
    ) -> dict[str, Any] | None:
        """Check a mapping against ``fields`` and convert each value (errors dropped)."""
        what = prefix.rstrip(":. ") or "the rules file"
        section = self.mapping(value, path, tuple(fields), what)
        if section is None:
            return None
        out = {}
        for key, item in section.items():
            got = fields[key](item, (*path, key), prefix + key)
            if got is not None:
                out[key] = got
        return out

    def typed(self, value: Any, path: Path, what: str, *types: type) -> Any:
        # bool is an int subclass; ``cost: true`` is a mistake, not 1.
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return value
        names = {str: "a string", int: "an integer", float: "a number"}
        want = " or ".join(names.get(t, t.__name__) for t in types)
        self.error(path, f"{what} must be {want}, got {describe(value)}")
        return None

    def string(self, value: Any, path: Path, what: str) -> str | None:
        result: str | None = self.typed(value, path, what, str)
        return result

    def lower(self, value: Any, path: Path, what: str) -> str | None:
        got = self.string(value, path, what)
        return got.strip().lower() if got is not None else None

    def integer(self, value: Any, path: Path, what: str) -> int | None:
        result: int | None = self.typed(value, path, what, int)
        return result

    def number(self, value: Any, path: Path, what: str) -> float | None:
        got = self.typed(value, path, what, int, float)
        return float(got) if got is not None else None

    def strings(self, value: Any, path: Path, what: str) -> tuple[str, ...] | None:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, LISTS):
            self.error(path, f"{what} must be a string or a list of strings, got {describe(value)}")
            return None
        items = [self.string(v, (*path, i), f"{what} item") for i, v in enumerate(value)]
        return tuple(i for i in items if i is not None) if None not in items else None

    def duration(self, value: Any, path: Path, what: str) -> float | None:
        return self.convert(value, path, parse_duration, what)

    def rate(self, value: Any, path: Path, what: str) -> Rate | None:
        return self.convert(value, path, parse_rate, what)

    def convert(self, value: Any, path: Path, parse: Callable[[Any], T], what: str) -> T | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.error(path, f"{what}: {exc}")
            return None


def describe(value: Any) -> str:
    """How ``value`` reads in a message: its type, and a scalar's value."""
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if type(value) in names:
        return f"{names[type(value)]} ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
