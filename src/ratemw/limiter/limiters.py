"""``Limiter`` and ``AsyncLimiter``: the one call every adapter makes.

Both are :class:`~ratemw.limiter.core._LimiterCore`, which decides without I/O; they
differ only in ``decide`` being a coroutine and in ``close`` / ``aclose``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import partial
from typing import Any

from ratemw.decision import Decision
from ratemw.errors import StoreClosed
from ratemw.limiter.core import _LimiterCore
from ratemw.limiter.plan import Plan
from ratemw.ops import otel
from ratemw.request import RequestInfo
from ratemw.store.breaker import store_breaker

__all__ = ["AsyncLimiter", "Limiter"]


class Limiter(_LimiterCore):
    """Decides, in-process, whether each request may proceed.

    ``rules`` is a :class:`RuleSet`, a mapping shaped like a rules file, or a
    path. ``clock`` (default: the system clock) is injectable for tests;
    ``tier_resolver`` maps a request to its tier; ``max_keys`` bounds each
    rule's key table; ``hash_key`` keys the digest of secrets (default:
    ``RATEMW_HASH_KEY``). Thread-safe.
    """

    #: ``decide(info) -> Decision``: allow or reject ``info``; never raises for request data.
    decide = _LimiterCore._decide
    #: the same (a sync limiter never waits): the twin of ``AsyncLimiter.decide_nowait``
    decide_nowait = _LimiterCore._decide

    def _set_tracing(self, on: bool) -> None:
        # While OpenTelemetry traces, decide is an instance attribute wrapping what was
        # bound before (the class's, or a recorder's); while it does not, that wrapper is
        # gone and a decision costs nothing more.
        if not _trace_switch(self, on):
            return
        decide, annotate = self.decide, otel.annotate

        def traced(info: RequestInfo) -> Decision:
            decision = decide(info)
            annotate(decision)
            return decision

        self.decide = self.decide_nowait = traced  # type: ignore[method-assign]

    def close(self) -> None:
        """Give leased tokens back, stop the reconcile loop, release all state. Idempotent."""
        if not self._closed:
            self.ops.stop()
            if self.engine is not None:
                self.engine.close()
        self._closed = True
        self.reset()

    def __enter__(self) -> Limiter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncLimiter(_LimiterCore):
    """The asyncio twin of :class:`Limiter`: ``await limiter.decide(info)``.

    With a store (``redis_url=`` or an ``AsyncRedisStore``) it awaits the asyncio
    client and runs its reconcile loop as a task: nothing blocks the event loop.
    """

    _local_fast_path = True

    def _set_tracing(self, on: bool) -> None:
        # As Limiter._set_tracing, for both entry points.
        if not _trace_switch(self, on):
            return
        decide, nowait, annotate = self.decide, self.decide_nowait, otel.annotate

        async def annotated(pending: Awaitable[Decision]) -> Decision:
            decision = await pending
            annotate(decision)
            return decision

        def traced_nowait(info: RequestInfo) -> Decision | Awaitable[Decision]:
            decided = nowait(info)
            if isinstance(decided, Decision):
                annotate(decided)
                return decided
            return annotated(decided)

        async def traced(info: RequestInfo) -> Decision:
            return await annotated(decide(info))

        self.decide = traced  # type: ignore[method-assign]
        self.decide_nowait = traced_nowait  # type: ignore[method-assign]

    @staticmethod
    def _store_for(url: str) -> Any:
        from ratemw.store.redis_aio import AsyncRedisStore

        return AsyncRedisStore(url, breaker=partial(store_breaker, url))

    @staticmethod
    def _engine_for(store: Any, **options: Any) -> Any:
        from ratemw.leases.engine_aio import AsyncSharedEngine

        return AsyncSharedEngine(store, **options)

    async def decide(self, info: RequestInfo) -> Decision:
        """Allow or reject ``info``; never raises for request data."""
        decision = self.decide_nowait(info)
        if isinstance(decision, Decision):
            return decision
        return await decision

    def decide_nowait(self, info: RequestInfo) -> Decision | Awaitable[Decision]:
        """``decide``, without a coroutine when none is needed: the :class:`Decision`
        when it was made without waiting (the fast path), else an awaitable of it.

        Adapters call this: a coroutine object per request costs about half of what
        the fast path's decision costs.
        """
        hit = self._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                fast = policy.fast  # a slot read and a plain call (see _LimiterCore._decide)
                decision = fast(info)
                if decision is not None:
                    return decision
        return self._adrive(self._plan(hit, info))

    async def _adrive(self, plan: Plan) -> Decision:
        """Run a plan, awaiting the store (if any)."""
        try:
            request = next(plan)
            while True:
                policy, key, now = request
                try:
                    if policy.shared is not None:
                        answer = await policy.shared.aacquire(key, now)
                    else:
                        answer = policy.acquire(key, now)
                except StoreClosed as closed:
                    request = plan.throw(closed)
                else:
                    request = plan.send(answer)
        except StopIteration as done:
            result: Decision = done.value
            return result

    async def aclose(self) -> None:
        """Give leased tokens back, stop the reconcile task, release all state. Idempotent."""
        if not self._closed:
            self.ops.stop()
            if self.engine is not None:
                await self.engine.aclose()
        self._closed = True
        self.reset()

    async def __aenter__(self) -> AsyncLimiter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def _trace_switch(limiter: _LimiterCore, on: bool) -> bool:
    """Turn tracing off (putting back what was bound before) or note it on; True when
    the caller must now bind its traced entry points."""
    state = limiter.__dict__
    if on:
        if "_untraced" in state:
            return False
        state["_untraced"] = (state.get("decide"), state.get("decide_nowait"))
        return True
    saved = state.pop("_untraced", None)
    if saved is not None:
        for name, bound in zip(("decide", "decide_nowait"), saved, strict=True):
            if bound is None:
                state.pop(name, None)
            else:
                state[name] = bound
    return False
