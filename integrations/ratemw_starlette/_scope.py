"""What only Starlette knows about a request: the authenticated user and the route name."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from starlette.routing import BaseRoute, Match

from ratemw.request import RequestInfo, from_asgi_scope, unresolved_user
from ratemw.types import Scope

#: Where the middleware leaves its limiter for the ``RateLimit`` dependency.
SCOPE_KEY = "ratemw.limiter"
_MAX_CACHED = 10_000


def user_of(scope: Scope) -> str | None:
    """The identity of ``scope["user"]`` (set by ``AuthenticationMiddleware``), if signed in."""
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    for attr in ("identity", "display_name"):
        try:
            value = getattr(user, attr, None)
        except NotImplementedError:  # starlette's BaseUser leaves both abstract
            continue
        if value:
            return str(value)
    return None


#: how the user getter is named in the log line of its failure
USER_SOURCE = 'scope["user"] (Starlette authentication)'


def scope_user(scope: Scope) -> str | None:
    """:func:`user_of`; if the user object raises, the core's stand-in (logged once per
    cause), so that only the rules that need the user fall back."""
    try:
        return user_of(scope)
    except Exception as exc:
        return unresolved_user(exc, USER_SOURCE)


def request_info(scope: Scope, route: str | None = None) -> RequestInfo:
    """``from_asgi_scope`` plus the Starlette user and ``route``."""
    return from_asgi_scope(scope, user=scope_user(scope), route=route)


class RouteNames:
    """The Starlette route name of a request, as ``url_for`` spells it (``"mount:child"``).

    Walks ``scope["app"].router.routes`` with ``route.matches(scope)``; cached per
    method and path (bounded), so ``Host`` routes are resolved for the first host seen.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str, str], str | None] = {}

    def __call__(self, scope: Scope) -> str | None:
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", None)
        if routes is None:
            return None
        key = (scope.get("method", ""), scope.get("root_path", ""), scope.get("path", ""))
        try:
            return self._cache[key]
        except KeyError:
            pass
        name = _find(routes, scope)
        if len(self._cache) >= _MAX_CACHED:
            self._cache.clear()  # a flood of distinct paths costs a walk, never memory
        self._cache[key] = name
        return name


def _find(routes: Iterable[BaseRoute], scope: Scope) -> str | None:
    partial: str | None = None
    for route in routes:
        match, child = route.matches(scope)
        if match is Match.NONE:
            continue
        name: str | None = getattr(route, "name", None)
        inner: Any = getattr(route, "routes", None)
        if inner:  # Mount or Host: the name is "outer:inner", as url_for wants it
            sub = _find(inner, {**scope, **child})
            if sub is not None:
                name = f"{name}:{sub}" if name else sub
        if match is Match.FULL:
            return name
        if partial is None:  # the path matched but not the method: the router answers 405
            partial = name
    return partial
