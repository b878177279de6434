"""Path index: exact paths in a dict, patterns in a segment trie, ``re:`` last.

Built once per snapshot. A lookup returns the indices of the rules whose path
matches in any of the request path's forms (:func:`~ratemw.rules.canonical.path_forms`),
in rule order; results are memoised by the path as handed over in a bounded dict, so a
busy path costs one dict lookup however many patterns there are, and the forms are
computed only on a miss.
"""

from __future__ import annotations

from collections.abc import Iterable

from ratemw.rules.canonical import path_forms
from ratemw.rules.paths import PathPattern, split_path

__all__ = ["PathIndex"]

_MEMO_LIMIT = 10_000


class _Node:
    __slots__ = ("children", "end", "rest", "wild")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.wild: _Node | None = None  # "*" or "{name}": exactly one segment
        self.end: list[int] = []  # patterns that end here
        self.rest: list[int] = []  # "**" here: zero or more remaining segments


def _key(segments: Iterable[str]) -> str:
    return "/" + "/".join(segments)


class PathIndex:
    """Which rules' paths match a request path."""

    def __init__(self, patterns: Iterable[tuple[int, PathPattern | None]]) -> None:
        self._exact: dict[str, list[int]] = {}
        self._root = _Node()
        self._regexes: list[tuple[int, PathPattern]] = []
        self._anywhere: list[int] = []  # rules without a path
        for index, pattern in patterns:
            if pattern is None:
                self._anywhere.append(index)
            elif pattern.kind == "exact":
                # Keyed like a request form: "/login/" and "/login" are one path.
                self._exact.setdefault(_key(pattern.segments), []).append(index)
            elif pattern.kind == "regex":
                self._regexes.append((index, pattern))
            else:
                self._insert(index, pattern.segments)
        self._memo: dict[str, tuple[int, ...]] = {}

    def _insert(self, index: int, segments: tuple[str, ...]) -> None:
        node = self._root
        for seg in segments:
            if seg == "**":
                node.rest.append(index)
                return
            if seg == "*":
                if node.wild is None:
                    node.wild = _Node()
                node = node.wild
            else:
                node = node.children.setdefault(seg, _Node())
        node.end.append(index)

    def lookup(self, path: str) -> tuple[int, ...]:
        """Indices of the rules whose path matches ``path``, ascending."""
        hit = self._memo.get(path)
        if hit is None:
            hit = self._compute(path)
            if len(self._memo) >= _MEMO_LIMIT:
                # Hostile or high-cardinality paths: start over rather than grow.
                self._memo.clear()
            self._memo[path] = hit
        return hit

    def _compute(self, path: str) -> tuple[int, ...]:
        found: set[int] = set(self._anywhere)
        for form in path_forms(path):
            segs = split_path(form)
            found.update(self._exact.get(_key(segs), ()))
            self._walk(self._root, segs, 0, found)
            for index, pattern in self._regexes:
                if pattern.regex is not None and pattern.regex.fullmatch(form):
                    found.add(index)
        return tuple(sorted(found))

    def _walk(self, node: _Node, segs: tuple[str, ...], i: int, found: set[int]) -> None:
        # Iterative over literal segments, recursive only where a wildcard branches.
        while True:
            found.update(node.rest)
            if i == len(segs):
                found.update(node.end)
                return
            if node.wild is not None:
                self._walk(node.wild, segs, i + 1, found)
            child = node.children.get(segs[i])
            if child is None:
                return
            node, i = child, i + 1
