"""The operations loop's Redis traffic: one pipelined round trip per pass, at most.

Each pass sends, in one pipeline, only what is due (docs/global.md, "Redis traffic"):
the penalty counts of the pass, bans this process imposed (with the version bump), the
top offenders every ``top_push_seconds`` (one script call for every rule) and, with
them, what the process decided since (``ops/fleet_counts.py``: one script call), and a
``GET`` of the version of bans and brownout when no engine heartbeat brought it within
``poll_seconds``. Bans, addresses and brownout are fetched (a second round trip) only
when that version differs from the one last fetched, after a failure, or every
:data:`REFRESH_SECONDS` in case a writer did not bump it (an older ratemw).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ratemw.ops.fleet_counts import FleetCounts
from ratemw.ops.measures import Ban
from ratemw.ops.shared import Fetched, Layout, TopPush
from ratemw.ops.topk import SpaceSaving

__all__ = ["REFRESH_SECONDS", "FleetSync"]

REFRESH_SECONDS = 60.0  # a full fetch at least this often, whatever the version says
_Pair = tuple[str, str]


class FleetSync:
    """What one limiter's operations know of the fleet's state, and when to ask."""

    def __init__(self, layout: Layout, poll_every: float, push_every: float) -> None:
        self.layout = layout
        self.poll_every = poll_every
        self.push_every = push_every
        self.engine: Any = None  # an engine whose heartbeat reads the version for us
        self.store: Any = None  # the RedisStore whose client the loop uses
        self._borrowed = False  # it is the limiter's own (not ours to close)
        self.counts: FleetCounts | None = None  # decisions for the console's charts
        self.forget()

    def forget(self) -> None:
        """Know nothing: the next pass fetches (start, fork, Redis back after a failure)."""
        self.fetched: int | None = None  # the version of what is held
        self.fetched_at = -float("inf")
        self.known: int | None = None  # the latest version heard of
        self.known_at = -float("inf")
        self.pushed_at = -float("inf")
        self.touched: dict[str, int] = {}  # rule -> minute key whose TTL this process set
        self.loaded = False  # the top-push script was sent with EVAL on this connection
        if self.counts is not None:
            self.counts.forget()

    def link(self, engine: Any, url: str) -> None:
        """Let ``engine``'s heartbeats read the version, when it talks to the Redis at
        ``url`` (its ``app`` is the operations' by construction)."""
        if engine is not None and _same_url(engine.raw_store, url):
            self.engine = engine
            engine.watch_key = self.layout.version_key

    def client(self, engine: Any, url: str) -> Any:
        """The redis-py client of the loop: the limiter's own store's when it is a sync
        one on ``url`` (one connection serves both loops), else a store of its own.
        Raises :class:`~ratemw.errors.StoreError` while Redis is unreachable."""
        if self.store is None:
            from ratemw.store.breaker import store_breaker
            from ratemw.store.redis import RedisStore

            store = getattr(engine, "raw_store", None)
            self._borrowed = isinstance(store, RedisStore) and _same_url(store, url)
            self.store = store if self._borrowed else RedisStore(url, breaker=store_breaker)
        return self.store.redis()

    def close(self, pending: Iterable[tuple[str, SpaceSaving]], wall: float) -> None:
        """Push what top offenders are left, and close the store if it is ours."""
        try:
            pushes = self._pushes(pending, wall, {})
            if pushes:
                self.layout.push_tops(self.store.redis(), pushes, wall)
            counts = self.counts
            counted = counts.command(self.layout.prefix, wall) if counts else None
            if counts is not None and counted is not None:
                client = self.store.redis()
                try:
                    reply = client.execute_command(*counted)
                except Exception as exc:  # NOSCRIPT: sent again with EVAL
                    reply = exc
                counts.sent(client, counted, reply)
        except Exception:  # closing: what cannot be sent is lost, as on a crash
            pass
        if not self._borrowed:
            self.store.close()

    def _hear_engine(self) -> None:
        engine = self.engine
        if engine is not None and engine.watched_at > self.known_at:
            self.known, self.known_at = engine.watched, engine.watched_at

    def exchange(
        self,
        client: Any,
        *,
        mono: float,
        wall: float,
        counts: Mapping[_Pair, int],
        windows: Mapping[str, float],
        unsent: list[Ban],
        pending: Iterable[tuple[str, SpaceSaving]],
        push: bool = False,
    ) -> tuple[dict[_Pair, int], Fetched | None]:
        """One pass's traffic: (fleet-wide penalty totals, what was fetched if anything).

        Raises what redis-py raises; nothing here is retried (a count or a ban sent
        twice would count twice)."""
        layout = self.layout
        self._hear_engine()
        pipe = client.pipeline(transaction=False)
        staged: list[str] = []
        if counts:
            layout.stage_rejections(pipe, counts, windows)
            staged += ["pen"] * (2 * len(counts))
        if unsent:
            layout.stage_bans(pipe, unsent, wall)
            writes = sum(3 if ban.address else 2 for ban in unsent)
            staged += ["ended", *["ban"] * writes, "bump"]
        top: list[Any] = []
        counted: list[Any] | None = None
        touched: dict[str, int] = {}
        if push or mono - self.pushed_at >= self.push_every:
            pushes = self._pushes(pending, wall, touched)
            if pushes:
                top = layout.top_command(pushes, wall, loaded=self.loaded)
                pipe.execute_command(*top)
                staged.append("top")
            counted = self.counts.command(layout.prefix, wall) if self.counts else None
            if counted is not None:  # the fleet's counts ride the same pipeline
                pipe.execute_command(*counted)
                staged.append("counts")
            self.pushed_at = mono
        refresh = bool(unsent) or self.fetched is None or mono - self.fetched_at >= REFRESH_SECONDS
        ask = not refresh and mono - self.known_at >= self.poll_every
        if ask:  # no heartbeat brought the version lately: ask (no need before a fetch)
            pipe.get(layout.version_key)
            staged.append("version")
        totals: dict[_Pair, int] = {}
        if staged:
            replies = pipe.execute(raise_on_error=False)
            if counted is not None and self.counts is not None:  # before a reply may raise
                self.counts.sent(client, counted, replies[staged.index("counts")])
            for what, reply in zip(staged, replies, strict=True):
                if what != "counts" and isinstance(reply, Exception):
                    if what != "top":
                        raise reply
                    layout.retry_top(client, top, reply)
            self.touched.update(touched)  # TTLs set: not again for these minute keys
            self.loaded = self.loaded or bool(top)
            if counts:
                totals = layout.totals(counts, replies)
            if unsent:
                layout.drop_ended(client, replies[staged.index("ended")])
            if ask:
                self.known, self.known_at = int(replies[-1] or 0), mono
        if not refresh and self.known == self.fetched:
            return totals, None
        fetched = layout.fetch(client, wall)
        self.fetched = self.known = fetched.version
        self.fetched_at = self.known_at = mono
        return totals, fetched

    def _pushes(
        self, pending: Iterable[tuple[str, SpaceSaving]], wall: float, touched: dict[str, int]
    ) -> list[TopPush]:
        minute = int(wall // 60)
        pushes = []
        for rule, sketch in pending:
            deltas = sketch.drain()
            if not deltas:
                continue
            touch = self.touched.get(rule) != minute  # TTLs once per minute key
            if touch:
                touched[rule] = minute
            pushes.append((rule, deltas, touch))
        return pushes


def _same_url(store: Any, url: str) -> bool:
    """Whether ``store`` (a Redis store twin) talks to the server ``url`` names."""
    from ratemw.store.redis import parse_target

    target = getattr(store, "_target", None)
    if target is None:  # a store built around a given client: no URL to compare
        return False
    try:
        return bool(parse_target(url, target.kind == "cluster") == target)
    except ValueError:
        return False
