"""The ``RATEMW`` settings dict, read once (and again when a test overrides it).

::

    RATEMW = {
        "RULES": BASE_DIR / "ratelimits.yaml",  # required: a path, a mapping like the file,
                                    # "consul://host:8500/key" or "redis://host/0?key=..."
        "WATCH": True,              # reload a RULES path when it changes (URLs: always)
        "REDIS_URL": None,          # shared limits across processes; None: limits are per process
        "TIER_RESOLVER": None,      # callable(RequestInfo) -> str | None, or its dotted path
        "REJECT_HANDLER": None,     # callable(request, decision) -> HttpResponse, or dotted path
        "HASH_KEY": None,           # key of the digest of secrets; None: env RATEMW_HASH_KEY
        "ENABLED": True,            # False: every request is allowed
        "WORKERS": None,            # processes, for check ratemw.W001; None: $WEB_CONCURRENCY
        "OPTIONS": {},              # more keyword arguments for Limiter / AsyncLimiter
    }
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

__all__ = [
    "CALLABLE_KEYS",
    "DEFAULTS",
    "get_settings",
    "import_callable",
    "limiter_options",
    "worker_count",
]

DEFAULTS: dict[str, Any] = {
    "RULES": None, "WATCH": True, "REDIS_URL": None, "TIER_RESOLVER": None, "REJECT_HANDLER": None,
    "HASH_KEY": None, "ENABLED": True, "WORKERS": None, "OPTIONS": {},
}  # fmt: skip
#: the keys that take a callable or its dotted path (imported by check ratemw.E003)
CALLABLE_KEYS = ("TIER_RESOLVER", "REJECT_HANDLER")


@functools.cache
def get_settings() -> dict[str, Any]:
    """``settings.RATEMW`` over :data:`DEFAULTS`; ``ImproperlyConfigured`` for unknown keys."""
    raw = getattr(settings, "RATEMW", None) or {}
    unknown = sorted(set(raw) - set(DEFAULTS))
    if unknown:
        known = ", ".join(DEFAULTS)
        raise ImproperlyConfigured(f"RATEMW: unknown key(s) {', '.join(unknown)} (known: {known})")
    return {**DEFAULTS, **raw}


def import_callable(key: str) -> Callable[..., Any] | None:
    """The callable (or dotted path) ``RATEMW[key]``, imported; ``None`` when unset.

    Raises ``ImproperlyConfigured`` naming the key and the path when the path does not
    import (whatever the module raised) or the value is not callable.
    """
    value = get_settings()[key]
    if isinstance(value, str):
        path = value
        try:
            value = import_string(path)
        except Exception as exc:  # ImportError, or whatever the module raised on import
            raise ImproperlyConfigured(
                f"RATEMW[{key!r}] = {path!r} cannot be imported: {type(exc).__name__}: {exc}"
            ) from exc
    if value is not None and not callable(value):
        raise ImproperlyConfigured(f"RATEMW[{key!r}] must be a callable or its dotted path")
    return value  # type: ignore[no-any-return]


def limiter_options() -> dict[str, Any]:
    """Keyword arguments for ``Limiter`` / ``AsyncLimiter``, besides the rules."""
    conf = get_settings()
    options: dict[str, Any] = {"enabled": bool(conf["ENABLED"]), **conf["OPTIONS"]}
    if conf["HASH_KEY"] is not None:
        options["hash_key"] = conf["HASH_KEY"]
    if conf["TIER_RESOLVER"] is not None:
        options["tier_resolver"] = import_callable("TIER_RESOLVER")
    if conf["REDIS_URL"]:
        options["redis_url"] = conf["REDIS_URL"]
    return options


def worker_count() -> int | None:
    """``RATEMW["WORKERS"]``, else ``$WEB_CONCURRENCY`` (gunicorn, uvicorn), else unknown."""
    workers = get_settings()["WORKERS"]
    env = os.environ.get("WEB_CONCURRENCY", "")
    return int(workers) if workers is not None else int(env) if env.isdigit() else None


def _reset(*, setting: str, **kwargs: Any) -> None:
    if setting == "RATEMW":
        get_settings.cache_clear()


setting_changed.connect(_reset)
