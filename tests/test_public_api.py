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


#: what the framework adapters may import from ratemw: its public modules, by name
ADAPTER_API = {
    "ratemw", "ratemw.wsgi", "ratemw.asgi", "ratemw.testing", "ratemw.request",
    "ratemw.decision", "ratemw.errors", "ratemw.types", "ratemw.metrics", "ratemw.config",
    "ratemw.rules", "ratemw.limiter", "ratemw.cli", "ratemw._deps",
}  # fmt: skip


def _adapter_imports() -> list[tuple[str, int, str, str]]:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "integrations"
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ratemw":
                found += [(path.name, node.lineno, node.module or "", a.name) for a in node.names]
            elif isinstance(node, ast.Import):
                found += [
                    (path.name, node.lineno, a.name, "")
                    for a in node.names
                    if a.name.split(".")[0] == "ratemw"
                ]
    return found


def test_adapters_import_only_public_names() -> None:
    imports = _adapter_imports()
    assert imports  # the walk found the adapters
    wrong = [
        f"{file}:{line}: from {module} import {name}"
        for file, line, module, name in imports
        if module not in ADAPTER_API or (name.startswith("_") and module != "ratemw._deps")
    ]
    assert not wrong, wrong
