"""Positions of the values in a TOML document, which ``tomllib`` does not report.

A small scanner over the text that records, for every key path, the line and column
of its value and of its key, so that problems in a TOML rules file point where the
YAML and JSON ones do. It never decides what the document means: ``tomllib`` does.
"""

from __future__ import annotations

import json
import re

from ratemw.rules.bounds import Path, Position

__all__ = ["TomlScanner"]

_BARE = re.compile(r"[A-Za-z0-9_-]+")
_SCALAR = re.compile(r"[^,\]}\s#]+")


class TomlScanner:
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
