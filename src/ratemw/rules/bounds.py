"""Bounds on a rules document, checked before and while it is parsed.

A document may come from anyone who can edit a watched file, a Consul key or the
control service, so nothing is built before these checks pass: its size, how deeply it
nests (scans that never recurse, so no parser can exhaust the stack), how many values
YAML aliases expand to (a "billion laughs" is refused before it is expanded), and how
long a number may be written. Each refusal is a :class:`Problem` with a position.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from ratemw.errors import Problem

__all__ = [
    "MAX_NUMBER_CHARS",
    "YAML_LOADER",
    "Key",
    "ParseLimits",
    "Path",
    "Position",
    "check_data",
    "check_size",
    "scan_json",
    "scan_toml",
    "scan_yaml",
]

Key = str | int
Path = tuple[Key, ...]
Position = tuple[int, int]

YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on a rules document, checked before it is parsed (docs/security.md).

    ``max_bytes``: the document's size in UTF-8 bytes (default 1 MiB, env
    ``RATEMW_RULES_MAX_BYTES``). ``max_depth``: how deeply mappings and lists
    nest (default 64, env ``RATEMW_RULES_MAX_DEPTH``). ``max_nodes``: values
    (scalars, lists and mappings, keys included) once every YAML alias is
    expanded (default 100,000, env ``RATEMW_RULES_MAX_NODES``). Numbers are
    at most :data:`MAX_NUMBER_CHARS` characters long.
    """

    max_bytes: int = 1024 * 1024
    max_depth: int = 64
    max_nodes: int = 100_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ParseLimits:
        """Defaults overridden by ``RATEMW_RULES_MAX_*``; a value that is not a positive
        integer is ignored (the default applies)."""
        env = os.environ if environ is None else environ
        values = {}
        for name in ("max_bytes", "max_depth", "max_nodes"):
            raw = env.get(f"RATEMW_RULES_{name.upper()}", "").strip()
            if raw.isdigit() and int(raw[:18]) > 0:
                values[name] = int(raw[:18])
        return cls(**values)


#: a number written longer than this is refused (Python parses at most 4300 digits,
#: YAML 1.1 base-60 integers cost quadratic time, and no setting needs more)
MAX_NUMBER_CHARS = 64


#: a number written longer than this is refused (Python parses at most 4300 digits,
#: YAML 1.1 base-60 integers cost quadratic time, and no setting needs more)
MAX_NUMBER_CHARS = 64


def check_size(data: str | bytes, source: str, limits: ParseLimits) -> Problem | None:
    """A Problem when ``data`` is larger than ``limits.max_bytes`` UTF-8 bytes, else None.

    It points at the first character past the limit.
    """
    size = len(data)
    if isinstance(data, str) and size * 4 > limits.max_bytes:
        size = len(data.encode("utf-8", "surrogatepass"))
    if size <= limits.max_bytes:
        return None
    head = data[: limits.max_bytes]
    newline = b"\n" if isinstance(head, bytes) else "\n"
    line = head.count(newline) + 1  # type: ignore[arg-type]
    column = len(head) - (head.rfind(newline) + 1) + 1  # type: ignore[arg-type]
    reason = (
        f"the rules document is too large: more than {limits.max_bytes} bytes "
        "(RATEMW_RULES_MAX_BYTES)"
    )
    return Problem(source, line, column, reason)


def _position(text: str, index: int) -> Position:
    line = text.count("\n", 0, index) + 1
    return line, index - (text.rfind("\n", 0, index) + 1) + 1


def _too_deep(source: str, pos: Position, limits: ParseLimits) -> Problem:
    reason = (
        f"the rules document nests more than {limits.max_depth} levels deep "
        "(RATEMW_RULES_MAX_DEPTH)"
    )
    return Problem(source, pos[0], pos[1], reason)


def _too_many(source: str, pos: Position, limits: ParseLimits) -> Problem:
    reason = (
        f"the rules document holds more than {limits.max_nodes} values "
        "(RATEMW_RULES_MAX_NODES); YAML aliases count as what they repeat"
    )
    return Problem(source, pos[0], pos[1], reason)


def _long_number(source: str, pos: Position, text: str) -> Problem:
    reason = (
        f"number {text[:20]}... is written with {len(text)} characters, more than "
        f"{MAX_NUMBER_CHARS}"
    )
    return Problem(source, pos[0], pos[1], reason)


# Brackets outside strings; an unterminated string runs to the end (so the scan
# stays linear whatever the text).
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\Z)|[\[\]{}]|-?[0-9][0-9.eE+-]*', re.S)


def scan_json(text: str, source: str, limits: ParseLimits) -> Problem | None:
    depth = nodes = 0
    for m in _JSON_TOKENS.finditer(text):
        token = m.group()
        if token not in ("]", "}"):
            nodes += 1
            if nodes > limits.max_nodes:
                return _too_many(source, _position(text, m.start()), limits)
        if token in ("[", "{"):
            depth += 1
            if depth > limits.max_depth:
                return _too_deep(source, _position(text, m.start()), limits)
        elif token in ("]", "}"):
            depth -= 1
        elif token[0] != '"' and len(token) > MAX_NUMBER_CHARS:
            return _long_number(source, _position(text, m.start()), token)
    return None


# Strings and comments are skipped; "." runs count the parts of a dotted key
# (tomllib spends quadratic time on long ones). Unterminated strings run to the
# end of their line (or, for multi-line ones, of the text): the scan stays linear.
_TOML_TOKENS = re.compile(
    r'"""(?:\\.|[^\\])*?(?:"""|\Z)|\'\'\'.*?(?:\'\'\'|\Z)'
    r'|"(?:[^"\\\n]|\\.)*(?:"|$)|\'[^\'\n]*(?:\'|$)|\#[^\n]*'
    r"|[\[\]{}=,\n.]|[0-9A-Za-z_:+-]+",
    re.S | re.M,
)


def scan_toml(text: str, source: str, limits: ParseLimits) -> Problem | None:
    depth = dots = nodes = 0
    for m in _TOML_TOKENS.finditer(text):
        token = m.group()
        if token[0] not in "]}=,\n.#":  # a key, a value or an opening bracket
            nodes += 1
            if nodes > limits.max_nodes:
                return _too_many(source, _position(text, m.start()), limits)
        if token in ("[", "{"):
            depth += 1
            dots = 0
            if depth > limits.max_depth:
                return _too_deep(source, _position(text, m.start()), limits)
        elif token in ("]", "}"):
            depth -= 1
            dots = 0
        elif token == ".":
            dots += 1
            if dots >= limits.max_depth:
                return _too_deep(source, _position(text, m.start()), limits)
        elif token in ("=", ",", "\n"):
            dots = 0
        elif token[0] in "0123456789+-" and len(token) > MAX_NUMBER_CHARS:
            return _long_number(source, _position(text, m.start()), token)
    return None


def check_data(
    data: Any, source: str, locate: Callable[[Path], Position], limits: ParseLimits
) -> Problem | None:
    """Refuse parsed data nested deeper than ``limits.max_depth`` or holding more than
    ``limits.max_nodes`` values. Iterative, so hostile data cannot exhaust the stack."""
    stack: list[tuple[Path, Any]] = [((), data)]
    nodes = 0
    while stack:
        path, value = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            return _too_many(source, locate(path), limits)
        if isinstance(value, Mapping):
            items: Iterator[tuple[Key, Any]] = iter(value.items())
        elif isinstance(value, list):
            items = enumerate(value)
        else:
            continue
        if len(path) >= limits.max_depth:
            return _too_deep(source, locate(path), limits)
        stack.extend(((*path, k), v) for k, v in items)
    return None


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")


def scan_yaml(text: str, source: str, limits: ParseLimits) -> Problem | None:
    """Walk the event stream (no nodes are built) and refuse what is beyond ``limits``.

    Aliases are counted as the size of what they expand to, so a few hundred
    bytes of nested aliases are refused before anything is expanded.
    """
    loader = YAML_LOADER(text)
    try:
        total = 0  # nodes so far, each alias counted as its expansion
        # anchor -> size of its node; negative while that node is still open
        # (as in the composer, the latest definition of a name wins)
        anchors: dict[str, int] = {}
        open_: list[tuple[str | None, int]] = []  # (anchor, total at start)
        while not loader.check_event(yaml.StreamEndEvent):
            event = loader.get_event()  # type: ignore[no-untyped-call]
            mark = event.start_mark
            if isinstance(event, yaml.AliasEvent):
                size = anchors.get(event.anchor or "", 1)  # unknown: the composer reports it
                if size < 0:
                    reason = (
                        f"alias *{event.anchor} refers to a node that contains it "
                        "(a recursive alias)"
                    )
                    return Problem(source, mark.line + 1, mark.column + 1, reason)
                total += size
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.anchor is not None:
                    anchors[event.anchor] = 1
                if len(event.value) > MAX_NUMBER_CHARS:
                    tag = event.tag if event.tag not in (None, "!") else None
                    if tag is None and not event.style:  # plain: YAML 1.1 resolution
                        tag = loader.resolve(yaml.ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
                    if tag in _NUMBER_TAGS:
                        return _long_number(source, (mark.line + 1, mark.column + 1), event.value)
            elif isinstance(event, yaml.CollectionStartEvent):
                total += 1
                open_.append((event.anchor, total - 1))
                if event.anchor is not None:
                    anchors[event.anchor] = -len(open_)
                if len(open_) > limits.max_depth:
                    return _too_deep(source, (mark.line + 1, mark.column + 1), limits)
            elif isinstance(event, yaml.CollectionEndEvent):
                if open_[-1][0] is not None and anchors[open_[-1][0]] == -len(open_):
                    anchors[open_[-1][0]] = total - open_[-1][1]
                open_.pop()
            if total > limits.max_nodes:
                return _too_many(source, (mark.line + 1, mark.column + 1), limits)
    except yaml.MarkedYAMLError as exc:
        # libyaml's scanner looks ahead and has a nesting limit of its own (1000)
        mark = exc.problem_mark
        if mark is not None and "maximum nesting depth" in str(exc.problem):
            return _too_deep(source, (mark.line + 1, mark.column + 1), limits)
        return None  # a syntax error: the composer reports it with its position
    except yaml.YAMLError:
        return None
    finally:
        loader.dispose()
    return None
