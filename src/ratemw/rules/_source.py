"""Read a rules document (YAML, TOML or JSON) into plain data plus positions.

Every later problem must name a file, line and column, so loading keeps a
table from data paths (``("rules", 0, "limit")``) to 1-based ``(line, column)``
of the value, and a second table to the position of the mapping key.

A document may come from anyone who can edit a watched file, a Consul key or
the control service, so loading is bounded before any parser builds anything
(:mod:`ratemw.rules.bounds`): its size, how deeply it nests, how many values
YAML aliases expand to, and how long a number may be written. Each refusal is
a :class:`Problem` with a position, like any other error in the file.
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
from ratemw.rules._toml_positions import TomlScanner
from ratemw.rules.bounds import (
    YAML_LOADER,
    Key,
    ParseLimits,
    Path,
    Position,
    check_data,
    check_size,
    scan_json,
    scan_toml,
    scan_yaml,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

__all__ = [
    "Document",
    "Key",
    "ParseLimits",
    "Path",
    "Position",
    "check_size",
    "format_for",
    "load_document",
]


FORMATS = ("yaml", "toml", "json")
_EXTENSIONS = {".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".json": "json"}


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


def load_document(
    text: str, source: str, fmt: str, *, limits: ParseLimits | None = None
) -> tuple[Document | None, list[Problem]]:
    """Parse ``text`` as ``fmt``; a syntax error gives ``None`` and one Problem.

    Duplicate mapping keys are reported as problems but do not stop loading
    (the last value wins, as in the parsers themselves). A document beyond
    ``limits`` (default :meth:`ParseLimits.from_env`) gives ``None`` and one
    Problem, before any parser runs. Never raises for the document's content.
    """
    limits = ParseLimits.from_env() if limits is None else limits
    too_big = check_size(text, source, limits)
    if too_big is not None:
        return None, [too_big]
    try:
        if fmt == "yaml":
            return _load_yaml(text, source, limits)
        if fmt == "json":
            return _load_json(text, source, limits)
        if fmt == "toml":
            return _load_toml(text, source, limits)
    except (RecursionError, MemoryError) as exc:  # pragma: no cover - the scans prevent it
        reason = f"the document cannot be parsed within bounds ({type(exc).__name__})"
        return None, [Problem(source, 0, 0, reason)]
    reason = f"unknown rules format {fmt!r} (expected one of {', '.join(FORMATS)})"
    return None, [Problem(source, 0, 0, reason)]


# -- YAML ---------------------------------------------------------------------


def _load_yaml(
    text: str, source: str, limits: ParseLimits
) -> tuple[Document | None, list[Problem]]:
    refused = scan_yaml(text, source, limits)
    if refused is not None:
        return None, [refused]
    loader = YAML_LOADER(text)
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
    except ValueError as exc:  # a constructor's int() or float(), e.g. "!!int abc"
        return None, [Problem(source, 0, 0, f"YAML value error: {exc}")]
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
    loader = YAML_LOADER(text)
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


def _load_json(
    text: str, source: str, limits: ParseLimits
) -> tuple[Document | None, list[Problem]]:
    refused = scan_json(text, source, limits)
    if refused is not None:
        return None, [refused]
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
    except ValueError as exc:  # pragma: no cover - int() of a long number: scanned
        return None, [Problem(source, 0, 0, f"JSON value error: {exc}")]
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


def _load_toml(
    text: str, source: str, limits: ParseLimits
) -> tuple[Document | None, list[Problem]]:
    refused = scan_toml(text, source, limits)
    if refused is not None:
        return None, [refused]
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
    except ValueError as exc:  # pragma: no cover - int() of a long number: scanned
        return None, [Problem(source, 0, 0, f"TOML value error: {exc}")]
    scanner = TomlScanner(text)
    # The scanner is best effort: tomllib has accepted the text, positions are a bonus.
    with contextlib.suppress(IndexError, ValueError):
        scanner.run()
    doc = Document(data, source, "toml", scanner.positions, scanner.key_positions)
    # Tables and dotted keys nest too ("[a.b.c]" then "d.e = 1"): check the result.
    refused = check_data(data, source, doc.locate, limits)
    return (doc, []) if refused is None else (None, [refused])
