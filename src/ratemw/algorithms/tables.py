"""Per-process key tables: bounded, with idle expiry and no per-hit bookkeeping.

A table maps an identity key to the mutable state of one algorithm. The hot
path is a plain ``dict.get``; a least-recently-used structure (``cachetools``
``LRUCache``) costs a move-to-end on every hit, which alone is about as much
as the whole bucket arithmetic, so this table evicts in the background of
inserts instead (see docs/design.md, "Key tables"):

* idle expiry: every insert examines a couple of entries of a snapshot of the
  keys (taken at most every ``sweep_seconds``); an entry whose state is "at
  rest" (indistinguishable from a new one: a full bucket, a past window, no
  request in flight) is dropped, which loses nothing;
* hard bound: past ``max_keys`` the oldest inserted entries go first, in
  batches, preferring entries at rest.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Iterator
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

__all__ = ["DEFAULT_MAX_KEYS", "KeyTable"]

DEFAULT_MAX_KEYS = 100_000
DEFAULT_SWEEP_SECONDS = 10.0
_SWEEP_PER_INSERT = 2
_S = TypeVar("_S")


class _StateAlgorithm(Protocol[_S]):
    def new_state(self, now: float) -> _S: ...

    def at_rest(self, state: _S, now: float) -> bool: ...


class KeyTable(Generic[_S]):
    """Identity key -> algorithm state, bounded to ``max_keys`` entries."""

    __slots__ = (
        "_algorithm",
        "_batch",
        "_cursor",
        "_max",
        "_new",
        "_rest",
        "_swept_at",
        "data",
        "evictions",
        "lock",
        "sweep_seconds",
    )

    def __init__(
        self,
        algorithm: _StateAlgorithm[_S],
        max_keys: int = DEFAULT_MAX_KEYS,
        sweep_seconds: float = DEFAULT_SWEEP_SECONDS,
    ) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self._algorithm = algorithm
        self._new: Callable[[float], _S] = algorithm.new_state
        self._rest: Callable[[_S, float], bool] = algorithm.at_rest
        self.data: dict[Hashable, _S] = {}
        self._max = max_keys
        self._batch = max(1, max_keys // 64)
        self._cursor: Iterator[Hashable] = iter(())
        self._swept_at = -math.inf
        self.sweep_seconds = sweep_seconds
        self.evictions = 0
        #: guards the states of this table; callers hold it around an algorithm call.
        self.lock = threading.Lock()

    @property
    def algorithm(self) -> _StateAlgorithm[_S]:
        """The algorithm whose states this table keeps."""
        return self._algorithm

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: object) -> bool:
        return key in self.data

    def peek(self, key: Hashable) -> _S | None:
        """The state of ``key`` if present, without creating it."""
        return self.data.get(key)

    def get(self, key: Hashable, now: float) -> _S:
        """The state of ``key``, created fresh when absent."""
        state = self.data.get(key)
        if state is None:
            state = self._insert(key, now)
        return state

    def _insert(self, key: Hashable, now: float) -> _S:
        data = self.data
        if len(data) >= self._max:
            self._evict(now)
        self._sweep(now, _SWEEP_PER_INSERT)
        # setdefault: another thread may have inserted the key meanwhile.
        return data.setdefault(key, self._new(now))

    def _sweep(self, now: float, budget: int) -> None:
        data, rest = self.data, self._rest
        for key in islice(self._cursor, budget):
            state = data.get(key)
            if state is not None and rest(state, now):
                data.pop(key, None)
            budget -= 1
        if budget > 0 and len(data) > 1 and now - self._swept_at >= self.sweep_seconds:
            # Cursor exhausted: walk a fresh snapshot of the keys, at most once per
            # sweep_seconds, so a key is dropped and re-created at most that often.
            self._swept_at = now
            self._cursor = iter(list(data))

    def _evict(self, now: float) -> None:
        data, rest = self.data, self._rest
        window = list(islice(data, self._batch * 4))
        idle = [k for k in window if (s := data.get(k)) is not None and rest(s, now)]
        victims = idle[: self._batch]
        if len(victims) < self._batch:
            taken = set(victims)
            victims += [k for k in window if k not in taken][: self._batch - len(victims)]
        for key in victims:
            if data.pop(key, None) is not None:
                self.evictions += 1

    def sweep(self, now: float) -> int:
        """Drop every entry at rest; return how many were dropped."""
        data, rest = self.data, self._rest
        dropped = 0
        for key in list(data):
            state = data.get(key)
            if state is not None and rest(state, now):
                data.pop(key, None)
                dropped += 1
        return dropped

    def renew_lock(self) -> None:
        """Replace the lock (after fork, a lock held by another thread stays held)."""
        self.lock = threading.Lock()

    def clear(self) -> None:
        self.data.clear()
        self._cursor = iter(())

    def items(self) -> list[tuple[Hashable, Any]]:
        return list(self.data.items())
