"""``RateLimitMiddleware`` for Starlette: the core ASGI middleware, built on first use."""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ratemw import asgi
from ratemw.config import LiveRules, is_url, live_async_limiter
from ratemw.decision import Decision
from ratemw.limiter import AsyncLimiter, RulesLike
from ratemw.request import RequestInfo, from_asgi_scope, unresolved_user
from ratemw.types import ASGIApp, Message, Receive, Scope, Send, TierResolver
from ratemw_starlette._scope import SCOPE_KEY, USER_SOURCE, RouteNames, user_of

__all__ = ["RateLimitMiddleware", "RejectHandler"]

#: ``on_reject(request, decision) -> Response`` (or an awaitable of one).
RejectHandler = Callable[[Request, Decision], "Response | Awaitable[Response]"]


class RateLimitMiddleware:
    """Rate-limit a Starlette or FastAPI application.

    ``rules`` is a rules file path (or a mapping or ``RuleSet``, a ``consul://``
    or ``redis://...?key=`` URL), loaded on the first request into an
    :class:`~ratemw.AsyncLimiter` with ``tier_resolver`` and, when set,
    ``redis_url``; or pass a ready ``limiter`` instead. A path is reloaded when it
    changes unless ``watch=False``; a URL is always watched (``self.live``).
    ``on_reject(request, decision)`` returns the response to a rejection
    (default: problem+json); the decision's headers it does not set are added.
    List it after ``AuthenticationMiddleware`` for ``identity: user``.

    The limiter is built at the application's start-up (the ASGI lifespan), so rules
    that are invalid or need a missing extra (:class:`ratemw.ConfigError`, with
    ``MissingExtra`` naming it) fail the start-up, as ``lifespan.startup.failed``;
    without a lifespan, on the first request. Arguments that are not callables raise
    ``TypeError`` here.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        rules: RulesLike = "ratelimits.yaml",
        limiter: AsyncLimiter | None = None,
        redis_url: str | None = None,
        tier_resolver: TierResolver | None = None,
        on_reject: RejectHandler | None = None,
        watch: bool = True,
    ) -> None:
        for name, value in (("tier_resolver", tier_resolver), ("on_reject", on_reject)):
            if value is not None and not callable(value):
                raise TypeError(f"ratemw_starlette: {name} must be a callable")
        self.app = app
        self._rules = rules
        self._watch = watch
        #: what keeps a watched path or a Consul / Redis source in force (else None)
        self.live: LiveRules | None = None
        self._redis_url = redis_url
        self._tier_resolver = tier_resolver
        self._on_reject = on_reject
        self._limiter = limiter
        self._inner: asgi.RateLimitMiddleware | None = None
        self._route_names = RouteNames()
        self._routes_for: object = None  # the snapshot _needs_routes was computed for
        self._needs_routes = True

    @property
    def limiter(self) -> AsyncLimiter:
        """The limiter; built from ``rules`` the first time it is needed."""
        if self._limiter is None:
            options: dict[str, Any] = {"tier_resolver": self._tier_resolver}
            if self._redis_url is not None:
                options["redis_url"] = self._redis_url
            rules, watch = self._rules, self._watch
            if isinstance(rules, (str, os.PathLike)) and (watch or is_url(rules)):
                # Built on the event loop (first request): swaps are handed to it.
                self._limiter, self.live = live_async_limiter(rules, watch=watch, **options)
            else:
                self._limiter = AsyncLimiter(rules, **options)
        return self._limiter

    def _built(self) -> asgi.RateLimitMiddleware:
        inner = self._inner
        if inner is None:
            # No await in between: built once.
            inner = self._inner = asgi.RateLimitMiddleware(
                self.app,
                limiter=self.limiter,
                request_info=self._request_info,
                on_reject=self._reject,
            )
        return inner

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan" and self._inner is None:
                await self._start(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        inner = self._inner
        if inner is None:  # no lifespan: built on the first request
            inner = self._built()
        scope[SCOPE_KEY] = inner.limiter
        await inner(scope, receive, send)

    async def _start(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Build the limiter when the server starts the application: a configuration
        that cannot work stops the start-up (uvicorn exits) instead of failing every
        request."""
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                self._built()
            except Exception as exc:
                await send({"type": "lifespan.startup.failed", "message": f"ratemw: {exc}"})
                raise
        pending: list[Message] = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)

    def _request_info(self, scope: Scope) -> RequestInfo:
        # Route names cost a walk of the routes (cached per path): only when a rule uses one.
        # (The inner middleware exists by now: its limiter attribute skips our property,
        # and the installed state's snapshot skips the limiter's: each is a call from C.)
        snapshot = self._inner.limiter._state.snapshot  # type: ignore[union-attr]
        if self._routes_for is not snapshot:
            self._needs_routes = any(r.match.route is not None for r in snapshot.ruleset.rules)
            self._routes_for = snapshot
        route = self._route_names(scope) if self._needs_routes else None
        user = None
        if scope.get("user") is not None:  # no AuthenticationMiddleware: no call
            try:  # scope_user, inline: a call per request shows in the benchmark
                user = user_of(scope)
            except Exception as exc:
                user = unresolved_user(exc, USER_SOURCE)
        return from_asgi_scope(scope, user=user, route=route)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, decision: Decision) -> None:
        hook = self._on_reject
        if hook is None:
            await asgi.send_problem(scope, receive, send, decision)
            return
        response = hook(Request(scope, receive), decision)
        if inspect.isawaitable(response):
            response = await response
        for name, value in decision.headers:
            response.headers.setdefault(name, value)
        await response(scope, receive, send)
