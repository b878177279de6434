"""``RedisStore``: the LEASES.md store on redis-py (single server, Sentinel or Cluster).

Fail fast (LEASES.md §9): 100 ms connect timeout, 50 ms command timeout, no client-side
retries, one circuit breaker per node. Nothing touches the network before the first
call, and a forked child builds its own client (§11). ``store/redis_aio.py`` is the
asyncio twin of this file; keep the two parallel.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ratemw._deps import require
from ratemw.errors import StoreError
from ratemw.store import _scripts as s
from ratemw.store.base import (
    HeartbeatResult,
    SlotResult,
    StoreUnavailable,
    TakeCall,
    TakeMode,
    TakeResult,
    WindowResult,
)
from ratemw.store.breaker import CircuitBreaker
from ratemw.store.redis_wire import (
    SENTINEL_OPTIONS,
    classify,
    parse_target,
    result_or_error,
    store_error,
    watched,
)

__all__ = ["RedisStore", "parse_target"]

_SINGLE = "*"  # breaker name when there is one server


class _Conn:
    """One process's client, registered scripts and breakers."""

    def __init__(self, client: Any, cluster: bool, breaker: Callable[[], CircuitBreaker]) -> None:
        self.client = client
        self.cluster = cluster
        self.scripts = {name: client.register_script(s.source(name)) for name in s.SCRIPT_NAMES}
        self.breakers: dict[str, CircuitBreaker] = {}
        self._new_breaker = breaker

    def node(self, key: str) -> str:
        return str(self.client.get_node_from_key(key).name) if self.cluster else _SINGLE

    def breaker(self, node: str) -> CircuitBreaker:
        found = self.breakers.get(node)
        if found is None:
            found = self.breakers.setdefault(node, self._new_breaker())
        return found


class StoreBase:
    """What both Redis store twins configure without I/O (httpx's ``BaseClient`` habit):
    the target, client options, breakers and fork bookkeeping. Subclasses add the lock
    of their kind and the client module."""

    _conn: _Conn | None

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        cluster: bool = False,
        connect_timeout_seconds: float = 0.1,
        command_timeout_seconds: float = 0.05,
        breaker: Callable[[], CircuitBreaker] = CircuitBreaker,
        **client_options: Any,
    ) -> None:
        if (url is None) == (client is None):
            raise ValueError("pass either url or client")
        self._target = parse_target(url, cluster) if url is not None else None
        self._given = client
        self._cluster = (
            self._target.kind == "cluster" if self._target else hasattr(client, "get_node_from_key")
        )
        self._options = {
            "socket_connect_timeout": connect_timeout_seconds,
            "socket_timeout": command_timeout_seconds,
            **client_options,
        }
        self._new_breaker = breaker
        self._seed = breaker()  # guards building the client (a cluster reads its topology)
        self._conn = None
        self._sentinel: Any = None
        self._pid = os.getpid()

    @property
    def breakers(self) -> dict[str, CircuitBreaker]:
        """Circuit breakers by node name (``*`` for a single server)."""
        return dict(self._conn.breakers) if self._conn else {}


class RedisStore(StoreBase):
    """Store on ``redis.Redis`` / ``redis.RedisCluster``; see :class:`~ratemw.store.base.Store`.

    Pass a ``url`` (``redis://``, ``rediss://``, ``unix://``, ``redis+sentinel://``,
    ``redis+cluster://``, or any URL with ``cluster=True``) or an existing ``client``.
    Extra keyword arguments go to the client constructor. Every failure raises
    :class:`~ratemw.errors.StoreError`; :class:`StoreUnavailable` when a node's breaker
    is open. ``breakers`` exposes the per-node breakers for metrics.
    """

    def __init__(self, url: str | None = None, **options: Any) -> None:
        super().__init__(url, **options)
        self._redis = require("redis", extra="redis", purpose="RedisStore")
        self._lock = threading.Lock()

    # -- connection ------------------------------------------------------

    def _make_client(self) -> Any:
        if self._given is not None:
            return self._given
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        assert self._target is not None
        # redis-py >= 6 retries 3 times with backoff by default: a dead server would cost
        # seconds per request instead of one timeout. The store decides on retries itself.
        options = {"retry": Retry(NoBackoff(), 0), **self._options}
        target = self._target
        if target.kind == "cluster":
            return self._redis.RedisCluster.from_url(target.url, **options)
        if target.kind == "sentinel":
            # the Sentinels too: a dead one listed first would cost seconds per discovery
            kwargs = {k: v for k, v in options.items() if k.startswith(SENTINEL_OPTIONS)}
            self._sentinel = self._redis.Sentinel(target.sentinels, sentinel_kwargs=kwargs)
            return self._sentinel.master_for(target.service, **options, **target.options)
        return self._redis.Redis.from_url(target.url, **options)

    def _connect(self) -> _Conn:
        if self._pid != os.getpid():
            # forked: the parent's sockets and lock state are not ours; start afresh
            self._pid, self._lock, self._conn = os.getpid(), threading.Lock(), None
            self._seed, self._sentinel = self._new_breaker(), None
        conn = self._conn
        if conn is not None:
            return conn
        with self._lock:
            if self._conn is None:
                if not self._seed.allow():
                    raise StoreUnavailable("redis unreachable (circuit open)")
                try:
                    self._conn = _Conn(self._make_client(), self._cluster, self._new_breaker)
                except Exception as exc:
                    self._seed.record_failure()
                    raise store_error("connect", exc) from exc
                self._seed.record_success()
            return self._conn

    def redis(self) -> Any:
        """The redis-py client (connected on first use), for operations state."""
        return self._connect().client

    def _run(self, what: str, key: str, call: Callable[[_Conn], Any], *, retry: bool) -> Any:
        """Run ``call`` under the key's node breaker; retry once on a connection error
        when ``retry`` (acquires only: a duplicate give would over-credit, LEASES.md §5)."""
        conn = self._connect()
        try:
            breaker = conn.breaker(conn.node(key))
        except Exception as exc:
            raise store_error(what, exc) from exc
        error: StoreError | None = None
        for _ in range(2 if retry else 1):
            if not breaker.allow():
                raise error or StoreUnavailable(f"redis {what}: circuit open, not attempted")
            try:
                reply = call(conn)
            except Exception as exc:
                failed, retryable = classify(exc)
                (breaker.record_failure if failed else breaker.record_success)()
                error = store_error(what, exc)
                if retryable:
                    continue
                raise error from exc
            breaker.record_success()
            return reply
        assert error is not None
        raise error

    def _script(self, name: str, key: str, args: list[str], *, retry: bool) -> Any:
        return self._run(name, key, lambda c: c.scripts[name](keys=[key], args=args), retry=retry)

    def _pipeline(self, conn: _Conn, calls: Sequence[TakeCall]) -> list[Any]:
        script, now = conn.scripts["take"], time.time()

        def send(batch: Sequence[TakeCall]) -> list[Any]:
            pipe = conn.client.pipeline(transaction=False)
            for call in batch:
                pipe.execute_command("EVALSHA", script.sha, 1, call.key, *s.take_args(call, now))
            return list(pipe.execute(raise_on_error=False))

        from redis.exceptions import NoScriptError

        replies = send(calls)
        for reply in replies:
            if isinstance(reply, Exception) and classify(reply)[0]:
                raise reply  # an outage, not one bad key: the breaker must see it

        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:  # restarted or SCRIPT FLUSHed: load once, resend only those
            script.sha = conn.client.script_load(script.script)
            for i, reply in zip(missing, send([calls[i] for i in missing]), strict=True):
                replies[i] = reply
        return [result_or_error(reply) for reply in replies]

    # -- operations ------------------------------------------------------

    def take(
        self,
        key: str,
        want: int,
        *,
        limit: int,
        period_seconds: float,
        burst: int | None = None,
        minimum: int | None = None,
        mode: TakeMode = TakeMode.NORMAL,
        horizon_seconds: float = 0.0,
        reserve_want: int | None = None,
    ) -> TakeResult:
        """Take up to ``want`` tokens (GCRA, LEASES.md §5)."""
        call = TakeCall(
            key, want, limit, period_seconds, burst, minimum, mode, horizon_seconds, reserve_want
        )
        return s.take_reply(self._script("take", key, s.take_args(call, time.time()), retry=True))

    def take_many(self, calls: Sequence[TakeCall]) -> list[TakeResult | StoreError]:
        """Several takes in one pipeline per node; a failure is returned in its place."""
        results: list[TakeResult | StoreError] = []
        groups: dict[str, list[int]] = {}
        try:
            conn = self._connect()
            for i, call in enumerate(calls):
                groups.setdefault(conn.node(call.key), []).append(i)
        except Exception as exc:
            err = exc if isinstance(exc, StoreError) else store_error("take", exc)
            return [err] * len(calls)
        results = [StoreUnavailable("not attempted")] * len(calls)
        for indexes in groups.values():
            batch = [calls[i] for i in indexes]
            try:
                replies = self._run(
                    "take", batch[0].key, functools.partial(self._pipeline, calls=batch), retry=True
                )
            except StoreError as exc:
                replies = [exc] * len(batch)
            for i, reply in zip(indexes, replies, strict=True):
                results[i] = reply
        return results

    def give(self, key: str, n: int, *, limit: int, period_seconds: float) -> int:
        """Return ``n`` unused tokens; returns how many were credited. Never retried."""
        args = s.give_args(n, limit, period_seconds, time.time())
        return int(self._script("give", key, args, retry=False)[0])

    def window_take(
        self, key: str, want: int, *, limit: int, window_seconds: float, minimum: int | None = None
    ) -> WindowResult:
        """Reserve up to ``want`` of ``limit`` per sliding ``window_seconds``."""
        args = s.window_take_args(want, minimum, limit, window_seconds, time.time())
        return s.window_take_reply(self._script("window_take", key, args, retry=True))

    def window_give(self, key: str, n: int, *, window_seconds: float, window: int) -> int:
        """Give back ``n`` tokens taken in ``window``; 0 once that window has ended."""
        args = s.window_give_args(n, window_seconds, window, time.time())
        return int(self._script("window_give", key, args, retry=False)[0])

    def slot_acquire(self, key: str, slot_id: str, *, limit: int, ttl_seconds: float) -> SlotResult:
        """Hold one of ``limit`` slots until renewed, released or ``ttl_seconds`` pass."""
        args = s.slot_acquire_args(limit, slot_id, ttl_seconds, time.time())
        return s.slot_acquire_reply(self._script("slot_acquire", key, args, retry=True))

    def slot_renew(self, key: str, slot_id: str, *, ttl_seconds: float) -> bool:
        """Extend a held slot; False if it expired (it is never re-created)."""
        args = s.slot_renew_args(slot_id, ttl_seconds, time.time())
        return bool(self._script("slot_renew", key, args, retry=True)[0])

    def slot_release(self, key: str, slot_id: str) -> bool:
        """Release a slot; False if it was not held."""
        args = s.slot_release_args(slot_id, time.time())
        return bool(self._script("slot_release", key, args, retry=False)[0])

    def heartbeat(
        self, key: str, process_id: str, *, liveness_seconds: float, watch: str | None = None
    ) -> HeartbeatResult:
        """Record this process as alive and count the live ones (``P``); with ``watch`` (a
        counter key in the same hash tag) read that counter in the same call."""
        args = s.heartbeat_args(process_id, liveness_seconds, time.time())
        keys = [key] if watch is None else [key, watch]
        reply = self._run(
            "heartbeat", key, lambda c: c.scripts["heartbeat"](keys=keys, args=args), retry=True
        )
        return watched(reply, watch)

    def ping(self) -> bool:
        """True if Redis answers (bypasses the breakers; never raises)."""
        try:
            return bool(self._connect().client.ping())
        except Exception:
            return False

    def close(self) -> None:
        """Close the client this store created (a given client is left open)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._given is None and self._pid == os.getpid():
            conn.client.close()
            if self._sentinel is not None:
                for sentinel in self._sentinel.sentinels:
                    sentinel.close()
