"""Read a rules document (YAML, TOML or JSON) into plain data plus positions.

Every later problem must name a file, line and column, so loading keeps a
table from data paths (``("rules", 0, "limit")``) to 1-based ``(line, column)``
of the value, and a second table to the position of the mapping key.
"""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from ratemw.errors import Problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = ["Document", "Key", "Path", "Position", "format_for", "load_document"]

Key = str | int
Path = tuple[Key, ...]
Position = tuple[int, int]

FORMATS = ("yaml", "toml", "json")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class Document:
    """Parsed data of one rules file and where each part of it was written."""

    data: Any
    source: str
    fmt: str
    positions: Mapping[Path, Position] = field(default_factory=dict)
    key_positions: Mapping[Path, Position] = field(default_factory=dict)

    def locate(self, path: Path, *, key: bool = False) -> Position:
        """Position of ``path`` (its key when ``key``), else of its nearest known parent.

        Returns ``(0, 0)`` when nothing on the way up is known (data from code).
        """
        if key and path in self.key_positions:
            return self.key_positions[path]
        for end in range(len(path), -1, -1):
            pos = self.positions.get(path[:end])
            if pos is not None:
                return pos
        return (0, 0)


def format_for(source: str, default: str = "yaml") -> str:
    """The format implied by ``source``'s extension (``.yaml``/``.yml``/``.toml``/``.json``)."""
    lowered = source.lower()
    for ext, fmt in _EXTENSIONS.items():
        if lowered.endswith(ext):
            return fmt
    return default


def load_document(text: str, source: str, fmt: str) -> tuple[Document | None, list[Problem]]:
    """Parse ``text`` as ``fmt``; a syntax error gives ``None`` and one Problem.

    Duplicate mapping keys are reported as problems but do not stop loading
    (the last value wins, as in the parsers themselves).
    """
    if fmt == "yaml":
        return _load_yaml(text, source)
    if fmt == "json":
        return _load_json(text, source)
    if fmt == "toml":
        return _load_toml(text, source)
    reason = f"unknown rules format {fmt!r} (expected one of {', '.join(FORMATS)})"
    return None, [Problem(source, 0, 0, reason)]


# -- YAML ---------------------------------------------------------------------


def _load_yaml(text: str, source: str) -> tuple[Document | None, list[Problem]]:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        positions: dict[Path, Position] = {}
        key_positions: dict[Path, Position] = {}
        duplicates: list[tuple[Path, Position]] = []
        if node is not None:
            _walk(node, (), positions, key_positions, duplicates, set())
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        return None, [_yaml_problem(exc, source)]
    except yaml.YAMLError as exc:
        return None, [Problem(source, 0, 0, f"YAML syntax error: {exc}")]
    finally:
        loader.dispose()
    problems = [_duplicate(source, path, pos) for path, pos in duplicates]
    return Document(data, source, "yaml", positions, key_positions), problems


def _yaml_problem(exc: yaml.MarkedYAMLError, source: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (0, 0)
    parts = [p for p in (exc.context, exc.problem) if p]
    return Problem(source, line, col, "YAML syntax error: " + (", ".join(parts) or str(exc)))


def _mark(node: yaml.Node) -> Position:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _walk(
    node: yaml.Node,
    path: Path,
    positions: dict[Path, Position],
    key_positions: dict[Path, Position],
    duplicates: list[tuple[Path, Position]] | None,
    active: set[int],
) -> None:
    # Aliases reuse node objects; ``active`` stops recursive anchors looping.
    if id(node) in active:
        return
    positions[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: set[str] = set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            key = key_node.value
            if key == "<<" and key_node.tag == "tag:yaml.org,2002:merge":
                continue
            child = (*path, key)
            if key in seen and duplicates is not None:
                duplicates.append((child, _mark(key_node)))
            seen.add(key)
            # Like the constructor, the last occurrence wins.
            key_positions[child] = _mark(key_node)
            _walk(value_node, child, positions, key_positions, duplicates, active)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), positions, key_positions, duplicates, active)
        active.discard(id(node))


def _yaml_positions(
    text: str, duplicates: list[tuple[Path, Position]]
) -> tuple[dict[Path, Position], dict[Path, Position]]:
    positions: dict[Path, Position] = {}
    key_positions: dict[Path, Position] = {}
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _walk(node, (), positions, key_positions, duplicates, set())
    except yaml.YAMLError:
        pass  # positions are best effort: problems then point at the nearest known parent
    finally:
        loader.dispose()
    return positions, key_positions


def _duplicate(source: str, path: Path, pos: Position) -> Problem:
    parent = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[:-1]).lstrip(".")
    where = f" in {parent}" if parent else " at the top level"
    return Problem(source, pos[0], pos[1], f"duplicate key {path[-1]!r}{where}")


# -- JSON ---------------------------------------------------------------------


def _load_json(text: str, source: str) -> tuple[Document | None, list[Problem]]:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                duplicates.append(key)
            out[key] = value
        return out

    try:
        data = json.loads(text, object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        return None, [Problem(source, exc.lineno, exc.colno, f"JSON syntax error: {exc.msg}")]
    # JSON is (nearly) a subset of YAML's flow style, so the YAML composer can
    # tell where each value is without a second hand-written parser.
    found: list[tuple[Path, Position]] = []
    positions, key_positions = _yaml_positions(text, found)
    problems = [_duplicate(source, path, pos) for path, pos in found]
    if duplicates and not found:  # the composer could not read it: no positions
        problems = [Problem(source, 0, 0, f"duplicate key {k!r}") for k in sorted(set(duplicates))]
    return Document(data, source, "json", positions, key_positions), problems


# -- TOML ---------------------------------------------------------------------

_TOML_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _load_toml(text: str, source: str) -> tuple[Document | None, list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line, col = getattr(exc, "lineno", 0), getattr(exc, "colno", 0)
        m = _TOML_AT.search(message)
        if m is not None:
            line, col = int(m[1]), int(m[2])
            message = message[: m.start()]
        elif message.endswith("(at end of document)"):
            line = text.count("\n") + 1
            col = len(text.rsplit("\n", 1)[-1]) + 1
            message = message[: -len("(at end of document)")].rstrip()
        return None, [Problem(source, line, col, f"TOML syntax error: {message}")]
    scanner = _TomlScanner(text)
    # The scanner is best effort: tomllib has accepted the text, positions are a bonus.
    with contextlib.suppress(IndexError, ValueError):
        scanner.run()
    return Document(data, source, "toml", scanner.positions, scanner.key_positions), []


_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\s#]+")


class _TomlScanner:
    """Find where keys, tables and array items of valid TOML text are written.

    Not a parser: it trusts that ``tomllib`` has accepted the text and only
    tracks ``[table]`` / ``[[array]]`` headers, ``key = value`` lines and the
    items of inline tables and arrays.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.i = 0
        self.positions: dict[Path, Position] = {(): (1, 1)}
        self.key_positions: dict[Path, Position] = {}
        self._counts: dict[Path, int] = {}
        self._line_starts = [0] + [m.end() for m in re.finditer(r"\n", text)]

    def pos(self, i: int | None = None) -> Position:
        i = self.i if i is None else i
        lo, hi = 0, len(self._line_starts) - 1
        while lo < hi:  # last line start <= i
            mid = (lo + hi + 1) // 2
            if self._line_starts[mid] <= i:
                lo = mid
            else:
                hi = mid - 1
        return (lo + 1, i - self._line_starts[lo] + 1)

    def peek(self, n: int = 1) -> str:
        return self.text[self.i : self.i + n]

    def skip(self, newlines: bool) -> None:
        while self.i < len(self.text):
            ch = self.text[self.i]
            if ch == "#":
                end = self.text.find("\n", self.i)
                self.i = len(self.text) if end < 0 else end
            elif ch in " \t\r" or (newlines and ch == "\n"):
                self.i += 1
            else:
                return

    def run(self) -> None:
        table: Path = ()
        while True:
            self.skip(newlines=True)
            if self.i >= len(self.text):
                return
            start = self.pos()
            if self.peek(2) == "[[":
                self.i += 2
                keys = self.keys()
                path = (*self._resolve(keys[:-1]), keys[-1])
                index = self._counts.get(path, 0)
                self._counts[path] = index + 1
                table = (*path, index)
                self.key_positions.setdefault(path, start)
                self.positions.setdefault(path, start)
                self.positions[table] = start
                self.i += 2  # "]]"
            elif self.peek() == "[":
                self.i += 1
                table = self._resolve(self.keys())
                self.positions.setdefault(table, start)
                self.key_positions.setdefault(table, start)
                self.i += 1  # "]"
            else:
                self.pair(table)

    def _resolve(self, keys: list[str]) -> Path:
        # "[rules.match]" after "[[rules]]" means the last item of "rules".
        path: Path = ()
        for key in keys:
            path = (*path, key)
            if path in self._counts:
                path = (*path, self._counts[path] - 1)
        return path

    def keys(self) -> list[str]:
        parts: list[str] = []
        while True:
            self.skip(newlines=False)
            ch = self.peek()
            if ch in ("'", '"'):
                parts.append(self.string())
            else:
                m = _BARE.match(self.text, self.i)
                if m is None:
                    raise ValueError("key expected")
                parts.append(m.group())
                self.i = m.end()
            self.skip(newlines=False)
            if self.peek() != ".":
                return parts
            self.i += 1

    def pair(self, table: Path) -> None:
        key_start = self.pos()
        path = (*table, *self.keys())
        self.skip(newlines=False)
        self.i += 1  # "="
        self.skip(newlines=False)
        self.key_positions[path] = key_start
        self.value(path)

    def value(self, path: Path) -> None:
        self.positions[path] = self.pos()
        ch = self.peek()
        if ch == "{":
            self.i += 1
            while True:
                self.skip(newlines=True)
                if self.peek() == "}":
                    self.i += 1
                    return
                self.pair(path)
                self.skip(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        elif ch == "[":
            self.i += 1
            index = 0
            while True:
                self.skip(newlines=True)
                if self.peek() == "]":
                    self.i += 1
                    return
                self.value((*path, index))
                index += 1
                self.skip(newlines=True)
                if self.peek() == ",":
                    self.i += 1
        elif ch in ("'", '"'):
            self.string()
        else:
            m = _SCALAR.match(self.text, self.i)
            if m is None:
                raise ValueError("value expected")
            # Dates may contain one space ("1979-05-27 07:32:00"); they never matter here.
            self.i = m.end()

    def string(self) -> str:
        quote = self.peek()
        if self.peek(3) == quote * 3:
            end = self.text.index(quote * 3, self.i + 3)
            # A multi-line string may end with up to two extra quotes.
            while self.text[end + 3 : end + 4] == quote:
                end += 1
            value = self.text[self.i + 3 : end]
            self.i = end + 3
            return value
        j = self.i + 1
        while self.text[j] != quote:
            if quote == '"' and self.text[j] == "\\":
                j += 1
            j += 1
        raw = self.text[self.i + 1 : j]
        self.i = j + 1
        if quote == '"' and "\\" in raw:
            try:
                return str(json.loads(f'"{raw}"'))
            except ValueError:
                return raw
        return raw
