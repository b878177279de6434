"""System checks (``manage.py check``), registered by :class:`ratemw_django.apps.RatemwConfig`.

- ``ratemw.E001``: the rules are missing or invalid (file, line and reason in the hint),
  or need an extra that is not installed;
- ``ratemw.E002``: the middleware is missing, or runs before authentication;
- ``ratemw.E003``: a dotted path of ``RATEMW`` (``TIER_RESOLVER``, ``REJECT_HANDLER``)
  does not import, or is not a callable;
- ``ratemw.W001`` (deploy): limits kept in process memory while several workers run;
- ``ratemw.W002`` (deploy): no trusted proxies, so clients behind a proxy share its address.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.urls import get_resolver

from ratemw import ConfigError, RuleSet, load_ruleset
from ratemw.config import read_rules, source_for
from ratemw.limiter import require_extras
from ratemw.rules import merge_rules, ruleset_from_data
from ratemw_django.conf import CALLABLE_KEYS, get_settings, import_callable, worker_count
from ratemw_django.decorators import registered_rules

__all__ = [
    "check_callables",
    "check_deploy",
    "check_middleware",
    "check_rules",
    "load_rules",
    "register_checks",
]

MIDDLEWARE_PATHS = (
    "ratemw_django.RateLimitMiddleware",
    "ratemw_django.middleware.RateLimitMiddleware",
)
AUTH_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"


def load_rules() -> tuple[RuleSet | None, list[checks.CheckMessage]]:
    """``RATEMW["RULES"]`` with the ``@ratelimit`` rules, as the middleware loads them,
    or the ``ratemw.E001`` errors that stop it."""
    return _load()


def _load() -> tuple[RuleSet | None, list[checks.CheckMessage]]:
    try:
        rules = get_settings()["RULES"]
    except ImproperlyConfigured as exc:
        return None, [checks.Error(str(exc), id="ratemw.E001")]
    if rules is None:
        hint = 'Set RATEMW = {"RULES": BASE_DIR / "ratelimits.yaml"} in your settings.'
        return None, [checks.Error("RATEMW['RULES'] is not set.", hint=hint, id="ratemw.E001")]
    try:
        if isinstance(rules, Mapping):
            ruleset = ruleset_from_data(rules)
        elif isinstance(rules, str) and "://" in rules:  # consul:// or redis://...?key=
            source = source_for(rules)
            try:
                ruleset = read_rules(source)
            finally:
                source.close()
        else:
            ruleset = load_ruleset(rules)
        get_resolver().url_patterns  # noqa: B018  imports the views: @ratelimit runs
        ruleset = merge_rules(ruleset, registered_rules())
        require_extras(ruleset)  # identity.jwt without PyJWT: named here, not at runtime
    except OSError as exc:
        msg = f"cannot read the ratemw rules file {rules}: {exc.strerror}"
        return None, [checks.Error(msg, hint="Check RATEMW['RULES'].", id="ratemw.E001")]
    except ConfigError as exc:
        return None, [
            checks.Error(
                f"invalid ratemw rules: {p.reason}",
                hint=f"{p.file}:{p.line}: {p.reason}",
                obj=p.file,
                id="ratemw.E001",
            )
            for p in exc.errors
        ]
    return ruleset, []


def check_rules(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ratemw.E001``: ``RATEMW["RULES"]`` (with the ``@ratelimit`` rules) must be valid."""
    return _load()[1]


def check_callables(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ratemw.E003``: every dotted path in ``RATEMW`` imports, as a callable."""
    try:
        conf = get_settings()
    except ImproperlyConfigured:
        return []  # unknown keys: reported by check_rules
    found: list[checks.CheckMessage] = []
    for key in CALLABLE_KEYS:
        try:
            import_callable(key)
        except ImproperlyConfigured as exc:
            value = conf[key]
            found.append(
                checks.Error(
                    str(exc),
                    hint=f"Check RATEMW[{key!r}]: a callable, or the dotted path of one.",
                    obj=value if isinstance(value, str) else key,
                    id="ratemw.E003",
                )
            )
    return found


def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ratemw.E002``: the middleware is installed, after ``AuthenticationMiddleware``."""
    middleware = list(getattr(settings, "MIDDLEWARE", None) or ())
    ours = [i for i, path in enumerate(middleware) if path in MIDDLEWARE_PATHS]
    if not ours:
        return [
            checks.Error(
                "ratemw_django is installed but its middleware is not in MIDDLEWARE.",
                hint=f"Add {MIDDLEWARE_PATHS[0]!r} to MIDDLEWARE, after {AUTH_MIDDLEWARE!r}.",
                id="ratemw.E002",
            )
        ]
    if AUTH_MIDDLEWARE in middleware and ours[0] < middleware.index(AUTH_MIDDLEWARE):
        return [
            checks.Error(
                "ratemw's middleware runs before AuthenticationMiddleware: "
                "rules with identity 'user' would see every request as anonymous.",
                hint=f"Move {middleware[ours[0]]!r} after {AUTH_MIDDLEWARE!r}.",
                id="ratemw.E002",
            )
        ]
    return []


def check_deploy(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``ratemw.W001`` and ``ratemw.W002``, run by ``manage.py check --deploy``."""
    ruleset, errors = _load()
    if errors:
        return []  # reported by check_rules
    found: list[checks.CheckMessage] = []
    workers = worker_count()
    if not get_settings()["REDIS_URL"] and (workers is None or workers > 1):
        count = "several" if workers is None else str(workers)
        found.append(
            checks.Warning(
                f"ratemw keeps limits in process memory, and {count} worker processes may "
                "serve requests: each one grants the full limit.",
                hint="Set RATEMW['REDIS_URL'] to share limits, or RATEMW['WORKERS'] = 1 "
                "(the default reads $WEB_CONCURRENCY) if one process serves all requests.",
                id="ratemw.W001",
            )
        )
    if ruleset is not None and not ruleset.identity.trusted_proxies:
        found.append(
            checks.Warning(
                "ratemw trusts no proxy: behind a reverse proxy or load balancer, every "
                "client has the proxy's address and shares one limit.",
                hint=f"Set identity.trusted_proxies in {ruleset.source} to your proxies' "
                "addresses, or silence ratemw.W002 if clients connect directly.",
                id="ratemw.W002",
            )
        )
    return found


def register_checks() -> None:
    """Register the checks under the ``ratemw`` tag (idempotent)."""
    checks.register(check_rules, "ratemw")
    checks.register(check_callables, "ratemw")
    checks.register(check_middleware, "ratemw")
    checks.register(check_deploy, "ratemw", deploy=True)
