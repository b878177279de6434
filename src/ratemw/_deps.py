"""Lazy imports of optional dependencies, with an error naming the extra to install."""

from __future__ import annotations

import importlib
from importlib import metadata
from types import ModuleType

from ratemw.errors import MissingDependency

__all__ = ["require"]

# module -> (distribution, minimum version)
_MINIMUM: dict[str, tuple[str, str]] = {
    "redis": ("redis", "5.0"),
    "watchdog": ("watchdog", "4.0"),
    "prometheus_client": ("prometheus-client", "0.20"),
    "jwt": ("pyjwt", "2.8"),
}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def require(module: str, *, extra: str, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependency` naming ``extra``.

    Call it from constructors, never at import time, so ``import ratemw`` works
    without any extra installed.
    """
    what = f" for {purpose}" if purpose else ""
    hint = f"pip install 'ratemw[{extra}]'"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise MissingDependency(f"{module} is required{what}; run: {hint}") from None
    dist, minimum = _MINIMUM.get(module, ("", ""))
    if dist:
        try:
            installed = metadata.version(dist)
        except metadata.PackageNotFoundError:
            return mod
        if _version_tuple(installed) < _version_tuple(minimum):
            raise MissingDependency(
                f"{dist}>={minimum} is required{what}, found {installed}; run: {hint}"
            ) from None
    return mod
