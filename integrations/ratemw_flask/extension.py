"""``RateMW``: the Flask extension (``init_app``, ``RATEMW_*`` config, view decorators).

It wraps ``app.wsgi_app`` with the core :class:`ratemw.wsgi.RateLimitMiddleware`,
so a streamed body holds its concurrency slots until the server closes it
(``teardown_request`` runs too early for that). Decorators only mark views; the
rules they declare are merged into the rule set once, on the app's first request,
when every view is registered, and matched by endpoint (``match: {route: ...}``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from flask import Flask
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect
from werkzeug.utils import import_string

from ratemw import Decision, Limiter, RequestInfo
from ratemw.config import LiveRules, is_url, live_limiter
from ratemw.request import from_wsgi_environ, unresolved_user
from ratemw.rules import merge_rules
from ratemw.wsgi import RateLimitMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["CONFIG_KEYS", "RateMW", "RateMWState"]

F = TypeVar("F", bound=Callable[..., Any])

#: ``RATEMW_<KEY>`` config keys (``RateMW(key=...)`` in lower case overrides them).
CONFIG_KEYS = (
    "RULES",  # path (relative to app.root_path), mapping like a rules file, consul:// or
    # redis://...?key= URL; required
    "WATCH",  # reload a RULES path when it changes (default True; URLs are always watched)
    "REDIS_URL",  # limits shared across processes; unset: limits are per process
    "TIER_RESOLVER",  # callable(RequestInfo) -> str | None, or its dotted path
    "USER_GETTER",  # callable() -> str | None run in a request context, or its dotted path
    "REJECT_HANDLER",  # callable(decision) -> response value, run in a request context
    "ENABLED",  # False allows every request (default True)
    "HASH_KEY",  # key of the digest of secrets (default: env RATEMW_HASH_KEY)
)
_LIMITS = "_ratemw_limits"
_EXEMPT = "_ratemw_exempt"


def _callable(conf: Mapping[str, Any], key: str) -> Any:
    """``RATEMW_<key>``: a callable, its dotted path (imported now), or ``None``.

    A setting that cannot work fails here, at start-up, naming the key: not as an
    error on every request.
    """
    value = conf.get(key)
    if isinstance(value, str):
        try:
            value = import_string(value)
        except ImportError as exc:
            raise RuntimeError(
                f"ratemw: RATEMW_{key} = {value!r} cannot be imported: {exc}"
            ) from exc
    if value is not None and not callable(value):
        raise TypeError(f"ratemw: RATEMW_{key} must be a callable or its dotted path")
    return value


def _marks(view: Any, attr: str) -> Any:
    """A mark set by a decorator on ``view`` or on a function it wraps."""
    while view is not None:
        if attr in getattr(view, "__dict__", {}):
            return view.__dict__[attr]
        view = getattr(view, "__wrapped__", None)
    return None


class RateMW:
    """Rate limiting for Flask: ``RateMW(app)`` or ``ratemw = RateMW(); ratemw.init_app(app)``.

    ``options`` are the ``RATEMW_*`` keys in lower case (``rules=``, ``user_getter=``,
    ...), taking precedence over ``app.config``; any other option goes to
    :class:`ratemw.Limiter` (``clock=``, ``max_keys=``, ``store=``).
    Raises :class:`ratemw.ConfigError` from ``init_app`` when the rules are invalid.
    """

    def __init__(self, app: Flask | None = None, **options: Any) -> None:
        self.options = options
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Build the app's limiter, keep it in ``app.extensions["ratemw"]``, wrap ``wsgi_app``."""
        conf = {k.upper(): v for k, v in app.config.get_namespace("RATEMW_").items()}
        conf.update({k.upper(): v for k, v in self.options.items() if k.upper() in CONFIG_KEYS})
        extra = {k: v for k, v in self.options.items() if k.upper() not in CONFIG_KEYS}
        rules = conf.get("RULES")
        if rules is None:
            raise RuntimeError("ratemw: set RATEMW_RULES (a rules file or a mapping)")
        if isinstance(rules, (str, os.PathLike)) and not is_url(rules):
            rules = Path(app.root_path, rules)
        kwargs: dict[str, Any] = {"enabled": bool(conf.get("ENABLED", True)), **extra}
        if conf.get("REDIS_URL"):
            kwargs["redis_url"] = conf["REDIS_URL"]
        if conf.get("HASH_KEY") is not None:
            kwargs["hash_key"] = conf["HASH_KEY"]
        if conf.get("TIER_RESOLVER") is not None:
            kwargs["tier_resolver"] = _callable(conf, "TIER_RESOLVER")
        # Imported before any limiter exists: a bad path leaves no watcher behind.
        getters = {key: _callable(conf, key) for key in ("USER_GETTER", "REJECT_HANDLER")}
        watch = bool(conf.get("WATCH", True))
        live: LiveRules | None = None
        if isinstance(rules, (str, os.PathLike)) and (watch or is_url(rules)):
            limiter, live = live_limiter(rules, watch=watch, **kwargs)
        else:
            limiter = Limiter(rules, **kwargs)
        state = RateMWState(app, limiter, rules, {**conf, **getters}, live=live)
        app.extensions["ratemw"] = state
        app.wsgi_app = state.wrap(app.wsgi_app)  # type: ignore[method-assign, assignment]

        from ratemw_flask.cli import ratemw_cli

        if "ratemw" not in app.cli.commands:
            app.cli.add_command(ratemw_cli)

    def limit(
        self,
        limit: str | Sequence[str] | Mapping[str, Any] | None = None,
        *,
        methods: Sequence[str] | None = None,
        **rule: Any,
    ) -> Callable[[F], F]:
        """Limit one view: ``@ratemw.limit("5/minute", identity="ip", lease={"size": 1})``.

        ``limit`` is written as in a rules file; ``methods`` narrows the match; other
        keywords are rule keys (``identity``, ``concurrency``, ``burst``, ``cost``, ...).
        """
        entry: dict[str, Any] = dict(rule)
        if limit is not None:
            entry["limit"] = limit if isinstance(limit, (str, Mapping)) else list(limit)
        if methods is not None:
            entry["methods"] = list(methods)

        def decorate(view: F) -> F:
            view.__dict__.setdefault(_LIMITS, []).append(entry)
            return view

        return decorate

    def exempt(self, view: F) -> F:
        """Never limit this view (no rule applies, not even the deny list)."""
        view.__dict__[_EXEMPT] = True
        return view


class RateMWState:
    """What ``app.extensions["ratemw"]`` holds: the app's ``limiter`` and its settings."""

    def __init__(
        self,
        app: Flask,
        limiter: Limiter,
        rules: Any,
        conf: Mapping[str, Any],
        live: LiveRules | None = None,
    ) -> None:
        self.app = app
        self.limiter = limiter
        self.rules = rules
        #: what keeps a watched path or a Consul / Redis source in force (else None)
        self.live = live
        self.user_getter: Callable[[], Any] | None = _callable(conf, "USER_GETTER")
        self.reject_handler: Callable[[Decision], Any] | None = _callable(conf, "REJECT_HANDLER")
        self.exempt: frozenset[str] = frozenset()
        self._needs_endpoint: tuple[object, bool] | None = None
        self._prepared = False
        self._lock = threading.Lock()

    def decorator_rules(self) -> list[dict[str, Any]]:
        """The rules declared with ``@ratemw.limit`` on this app's views, by endpoint."""
        out: list[dict[str, Any]] = []
        names: set[str] = set()
        for endpoint, view in self.app.view_functions.items():
            for entry in _marks(view, _LIMITS) or ():
                base = name = f"{view.__module__}.{view.__qualname__}"
                n = 1
                while name in names:  # stacked decorators, or one view at several endpoints
                    n += 1
                    name = f"{base}#{n}"
                names.add(name)
                match = {"route": endpoint}
                if "methods" in entry:
                    match["methods"] = entry["methods"]
                rest = {k: v for k, v in entry.items() if k != "methods"}
                out.append({"name": name, "match": match, **rest})
        return out

    def _prepare(self) -> None:
        with self._lock:
            if self._prepared:
                return
            views = self.app.view_functions.items()
            self.exempt = frozenset(e for e, v in views if _marks(v, _EXEMPT))
            extra = self.decorator_rules()
            if extra and self.live is not None:
                # Every reloaded version gets the @ratemw.limit rules too.
                self.live.set_transform(lambda ruleset: merge_rules(ruleset, extra))
            elif extra:
                self.limiter.update_rules(merge_rules(self.limiter.snapshot.ruleset, extra))
            self._prepared = True

    def _endpoint_needed(self) -> bool:
        # Per request: the installed state's snapshot read directly (the public property
        # costs a call, a tenth of what this adapter adds).
        snapshot = self.limiter._state.snapshot
        cached = self._needs_endpoint
        if cached is None or cached[0] is not snapshot:
            routes = any(r.match.route is not None for r in snapshot.ruleset.rules)
            cached = self._needs_endpoint = (snapshot, routes or bool(self.exempt))
        return cached[1]

    def endpoint(self, environ: WSGIEnvironment) -> str | None:
        """The Flask endpoint the request goes to, or ``None`` (404, 405, redirect)."""
        try:
            endpoint, _ = self.app.url_map.bind_to_environ(environ).match()
        except (HTTPException, RequestRedirect):
            return None
        return str(endpoint)

    def wrap(self, wsgi_app: WSGIApplication) -> WSGIApplication:
        """``wsgi_app`` behind the core middleware, exempt endpoints going around it."""
        limited = RateLimitMiddleware(
            wsgi_app,
            limiter=self.limiter,
            request_info=self.request_info,
            on_reject=self.on_reject if self.reject_handler is not None else None,
        )

        def app(environ: WSGIEnvironment, start_response: StartResponse) -> Any:
            if not self._prepared:
                self._prepare()
            if self._endpoint_needed():
                endpoint = environ["ratemw.endpoint"] = self.endpoint(environ)
                if endpoint in self.exempt:
                    return wsgi_app(environ, start_response)
            return limited(environ, start_response)

        return app

    def request_info(self, environ: WSGIEnvironment) -> RequestInfo:
        user = None
        if self.user_getter is not None:
            try:
                with self.app.request_context(environ):
                    found = self.user_getter()
                user = None if found is None else str(found)
            except Exception as exc:  # only the rules that need the user fall back
                user = unresolved_user(exc, "RATEMW_USER_GETTER")
        return from_wsgi_environ(environ, user=user, route=environ.get("ratemw.endpoint"))

    def on_reject(
        self, environ: WSGIEnvironment, start_response: StartResponse, decision: Decision
    ) -> Any:
        handler = self.reject_handler
        if handler is None:  # pragma: no cover  (only installed when configured)
            raise RuntimeError("no RATEMW_REJECT_HANDLER")
        with self.app.request_context(environ):
            response = self.app.make_response(handler(decision))
        return response(environ, start_response)
