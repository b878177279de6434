"""The public API is pinned: every name a user imports today from ratemw's public modules
stays importable, whatever moves inside the package. A name added to or removed from an
``__all__`` must be added here on purpose."""

from __future__ import annotations

import importlib

import pytest

PUBLIC: dict[str, set[str]] = {
    "ratemw": {
        "AsyncLimiter", "ConfigError", "Decision", "Limiter", "MissingDependency", "Problem",
        "RatemwError", "RequestInfo", "RuleSet", "Snapshot", "StoreError", "SystemClock",
        "__version__", "compile_rules", "load_ruleset", "parse_ruleset",
    },
    "ratemw.wsgi": {"RateLimitMiddleware"},
    "ratemw.asgi": {"RateLimitMiddleware", "send_problem"},
    "ratemw.testing": {"ManualClock", "disabled", "reset"},
    "ratemw_django": {"RateLimitMiddleware", "metrics_view", "ratelimit"},
    "ratemw_flask": {"CONFIG_KEYS", "RateMW", "RateMWState", "metrics_view"},
    "ratemw_starlette": {
        "RateLimit", "RateLimitMiddleware", "RejectHandler", "metrics_endpoint",
    },
}  # fmt: skip

#: names the docs tell users to import from modules without an ``__all__`` of note
DOCUMENTED: dict[str, set[str]] = {
    "ratemw.request": {"RequestInfo", "from_wsgi_environ", "from_asgi_scope"},
    "ratemw.wsgi": {"RejectHandler"},
    "ratemw.asgi": {"RejectHandler"},
    "ratemw.metrics": {"asgi_app", "wsgi_app"},
    "ratemw.config": {"LiveRules", "live_async_limiter", "live_limiter"},
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_all_is_pinned(module: str) -> None:
    imported = importlib.import_module(module)
    assert set(imported.__all__) == PUBLIC[module]
    for name in PUBLIC[module]:
        assert hasattr(imported, name), f"{module}.{name}"


@pytest.mark.parametrize("module", sorted(DOCUMENTED))
def test_documented_names_import(module: str) -> None:
    imported = importlib.import_module(module)
    for name in DOCUMENTED[module]:
        assert hasattr(imported, name), f"{module}.{name}"
