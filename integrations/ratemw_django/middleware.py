"""``RateLimitMiddleware``: one Django middleware, sync and async capable.

Where limiting happens: in ``__call__`` / ``__acall__``, before the rest of the
chain, not in ``process_view``. Django adapts a ``process_view`` to the chain's
mode, so an async stack would run a sync hook through ``sync_to_async`` (or a
sync stack an async one through ``async_to_sync``); a request that resolves to
no view would never be limited; and the decision would have to travel through
the request to the code that releases it. Rules that name a route
(``match: {route: ...}``, ``@ratelimit``) need the resolved view, so the
middleware resolves the path itself with ``django.urls.resolve``, only when some
rule names a route, and caches the answer per URLconf and path (bounded).

A request's route is the first of its view's dotted name (what ``@ratelimit``
rules name), its namespaced URL name and its URL name that some rule names.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from inspect import isawaitable
from typing import Any, cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.urls import Resolver404, get_resolver, resolve

from ratemw import AsyncLimiter, ConfigError, Decision, Limiter, RequestInfo, Snapshot
from ratemw.config import LiveRules, is_url, live_async_limiter, live_limiter
from ratemw.errors import log_decide_failure
from ratemw.request import EnvironHeaders, unresolved_user
from ratemw.rules import merge_rules
from ratemw_django.conf import get_settings, import_callable, limiter_options
from ratemw_django.decorators import registered_rules, view_path

__all__ = ["RateLimitMiddleware", "default_reject"]

log = logging.getLogger("ratemw.django")

_ROUTE_CACHE_LIMIT = 10_000


def default_reject(request: HttpRequest, decision: Decision) -> HttpResponse:
    """The ``application/problem+json`` answer (403, 429 or 503) with the decision's headers."""
    status, headers, body = decision.response()
    response = HttpResponse(body, status=status)
    for name, value in headers:
        response[name] = value
    return response


class _Plan:
    """What one snapshot asks of a request: the user? the route (and which names)?"""

    def __init__(self, snapshot: Snapshot, tier_resolver: object) -> None:
        rs = snapshot.ruleset
        self.snapshot = snapshot
        self.needs_user = (
            tier_resolver is not None
            or any("user" in r.identity for r in rs.rules)
            or any(e.startswith("user:") for e in (*rs.allow, *rs.deny))
        )
        self.routes = frozenset(r.match.route for r in rs.rules if r.match.route is not None)
        self.cache: dict[tuple[Any, str], str | None] = {}

    def route(self, request: HttpRequest) -> str | None:
        urlconf = getattr(request, "urlconf", None)
        key = (urlconf, request.path_info)
        try:
            return self.cache[key]
        except KeyError:
            pass
        try:
            match = resolve(request.path_info, urlconf)
        except Resolver404:
            route = None
        else:
            names = (view_path(match.func), match.view_name, match.url_name)
            route = next((n for n in names if n in self.routes), None)
        if len(self.cache) >= _ROUTE_CACHE_LIMIT:
            self.cache.clear()
        self.cache[key] = route
        return route


#: how the user getter is named in the log line of its failure
_USER_SOURCE = "request.user (Django authentication)"


def _user_id(user: Any) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return str(user.pk)


def _request_user(request: HttpRequest) -> str | None:
    try:
        return _user_id(getattr(request, "user", None))
    except Exception as exc:  # a session or user lookup failed: only user rules fall back
        return unresolved_user(exc, _USER_SOURCE)


class RateLimitMiddleware:
    """Rate-limit every request with the rules of ``settings.RATEMW``.

    Sync stacks use a :class:`ratemw.Limiter`, async stacks an
    :class:`ratemw.AsyncLimiter`. Allowed responses carry the rate-limit headers;
    rejected requests get ``RATEMW["REJECT_HANDLER"]`` (default:
    :func:`default_reject`). Concurrency slots are released when the response is
    complete: at once, or after the last chunk of a streaming response.
    A ``RULES`` path is reloaded when it changes (unless ``WATCH`` is false), a
    ``consul://`` or ``redis://...?key=`` URL always: ``self.live`` is the
    :class:`ratemw.config.LiveRules` doing it; a bad version is refused and logged.
    Raises ``ImproperlyConfigured`` at start-up when the rules are invalid.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        rules = get_settings()["RULES"]
        if rules is None:
            raise ImproperlyConfigured("RATEMW['RULES'] is not set (see ratemw.E001)")
        # Imported before any limiter (and live watcher) exists: a bad path fails here.
        self.reject: Callable[..., Any] = import_callable("REJECT_HANDLER") or default_reject
        options = limiter_options()
        limiter_class = AsyncLimiter if self.async_mode else Limiter
        watch = bool(get_settings()["WATCH"])
        #: keeps a watched RULES path, or a Consul / Redis source, in force (else None)
        self.live: LiveRules | None = None
        try:
            limiter: Limiter | AsyncLimiter
            if isinstance(rules, (str, os.PathLike)) and (watch or is_url(rules)):
                build = live_async_limiter if self.async_mode else live_limiter
                limiter, self.live = build(rules, watch=watch, **options)
            else:
                limiter = limiter_class(rules, **options)
            get_resolver().url_patterns  # noqa: B018  imports the views: @ratelimit runs
            extra = registered_rules()
            if extra and self.live is not None:
                # Every reloaded version gets the @ratelimit rules too.
                self.live.set_transform(lambda ruleset: merge_rules(ruleset, extra))
            elif extra:
                limiter.update_rules(merge_rules(limiter.snapshot.ruleset, extra))
        except ConfigError as exc:
            if self.live is not None:
                self.live.close()
            raise ImproperlyConfigured(f"invalid ratemw rules:\n{exc}") from exc
        self.limiter = limiter
        # Bound once, typed apart: only one of the two is used by this instance.
        self._decide = cast("Callable[[RequestInfo], Decision]", limiter.decide)
        self._adecide = cast("Callable[[RequestInfo], Awaitable[Decision]]", limiter.decide)
        self._plan = _Plan(limiter.snapshot, limiter.tier_resolver)
        self._lock = threading.Lock()

    def _current_plan(self) -> _Plan:
        plan = self._plan
        snapshot = self.limiter.snapshot
        if plan.snapshot is not snapshot:  # the rules were reloaded
            with self._lock:
                if self._plan.snapshot is not snapshot:
                    self._plan = _Plan(snapshot, self.limiter.tier_resolver)
                plan = self._plan
        return plan

    def _info(self, request: HttpRequest, plan: _Plan, user: str | None) -> RequestInfo:
        route = plan.route(request) if plan.routes else None
        # request.META is the WSGI environ (or its ASGI equivalent); request.path is the
        # decoded full path in both cases. Headers are read from META on demand.
        meta = request.META
        return RequestInfo(
            request.method or "GET",
            request.path,
            str(meta.get("HTTP_HOST") or meta.get("SERVER_NAME", "")),
            str(meta.get("wsgi.url_scheme", "http")),
            str(meta.get("REMOTE_ADDR", "")),
            EnvironHeaders(meta),
            user=user,
            route=route,
            query=meta.get("QUERY_STRING", ""),
        )

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        try:
            plan = self._current_plan()
            user = _request_user(request) if plan.needs_user else None
            decision: Decision | None = self._decide(self._info(request, plan, user))
        except Exception as exc:
            log_decide_failure(exc)
            decision = None
        if decision is None:
            return self.get_response(request)
        if not decision.allowed:
            return self.reject(request, decision)
        try:
            response = self.get_response(request)
        except BaseException:
            decision.release()
            raise
        return _finish(response, decision)

    async def __acall__(self, request: HttpRequest) -> Any:
        try:
            plan = self._current_plan()
            user = await _auser_id(request) if plan.needs_user else None
            decision: Decision | None = await self._adecide(self._info(request, plan, user))
        except Exception as exc:
            log_decide_failure(exc)
            decision = None
        if decision is None:
            return await self.get_response(request)
        if not decision.allowed:
            rejected = self.reject(request, decision)
            return await rejected if isawaitable(rejected) else rejected
        try:
            response = await self.get_response(request)
        except BaseException:
            decision.release()
            raise
        return _finish(response, decision)


async def _auser_id(request: HttpRequest) -> str | None:
    try:
        return await _alookup(request)
    except Exception as exc:  # as _request_user
        return unresolved_user(exc, _USER_SOURCE)


async def _alookup(request: HttpRequest) -> str | None:
    auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)
    if auser is not None:  # Django 5.0+, AuthenticationMiddleware
        return _user_id(await auser())
    if "user" in request.__dict__ and not hasattr(request.user, "_setupfunc"):
        return _user_id(request.user)  # a plain object, no session lookup
    # Django 4.2 lazy user: loading it may query the database.
    return await sync_to_async(lambda: _user_id(getattr(request, "user", None)))()


def _finish(response: HttpResponseBase, decision: Decision) -> HttpResponseBase:
    for name, value in decision.headers:
        response[name] = value
    if not response.streaming:
        decision.release()
    elif getattr(response, "file_to_stream", None) is not None:
        # A FileResponse that the server may send with wsgi.file_wrapper: that path
        # skips the content iterator but still ends with response.close().
        response._resource_closers.append(decision.release)
    elif response.is_async:
        response.streaming_content = _AsyncReleasing(response.streaming_content, decision)
    else:
        response.streaming_content = _Releasing(response.streaming_content, decision)
    return response


class _Releasing:
    """A body iterator releasing the slots after its last chunk, on an error, or when
    the response is closed (Django registers ``close``; PEP 3333 servers call it)."""

    def __init__(self, chunks: Iterable[bytes], decision: Decision) -> None:
        self._chunks = iter(chunks)
        self.close = decision.release

    def __iter__(self) -> _Releasing:
        return self

    def __next__(self) -> bytes:
        try:
            return next(self._chunks)
        except BaseException:  # StopIteration included
            self.close()
            raise


class _AsyncReleasing:
    """The async twin of :class:`_Releasing`."""

    def __init__(self, chunks: AsyncIterable[bytes], decision: Decision) -> None:
        self._chunks = aiter(chunks)
        self.close = decision.release

    def __aiter__(self) -> _AsyncReleasing:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await anext(self._chunks)
        except BaseException:  # StopAsyncIteration included
            self.close()
            raise
