"""``@ratelimit``: declare a rule next to the view it limits.

The decorator only records a rule; :class:`~ratemw_django.RateLimitMiddleware`
merges every recorded rule into the rule set once, at start-up, and matches it
by route (``match: {route: "<module>.<qualname>"}`` of the view).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

__all__ = ["ratelimit", "registered_rules", "view_path"]

V = TypeVar("V", bound=Callable[..., Any])

_rules: list[dict[str, Any]] = []


def view_path(view: Any) -> str:
    """The dotted name of a view: ``module.qualname`` (the class of a class-based view)."""
    view = getattr(view, "view_class", view)
    if not hasattr(view, "__qualname__"):  # a callable instance
        view = type(view)
    return f"{view.__module__}.{view.__qualname__}"


def ratelimit(
    limit: str | Sequence[str] | Mapping[str, Any] | None = None,
    *,
    methods: Sequence[str] | None = None,
    **rule: Any,
) -> Callable[[V], V]:
    """Limit one view: ``@ratelimit("10/minute", identity="user", lease={"size": 5})``.

    ``limit`` is written as in a rules file (one limit, a list, or a map of tiers);
    ``methods`` narrows the match; any other keyword is a rule key (``identity``,
    ``algorithm``, ``burst``, ``cost``, ``concurrency``, ``mode``, ``lease``, ...).
    Problems are reported (``ConfigError``) when the middleware merges the rules,
    and by ``manage.py check`` (ratemw.E001).
    """

    def decorate(view: V) -> V:
        name = view_path(view)
        match: dict[str, Any] = {"route": name}
        if methods is not None:
            match["methods"] = list(methods)
        entry: dict[str, Any] = {"match": match}
        if limit is not None:
            entry["limit"] = limit if isinstance(limit, (str, Mapping)) else list(limit)
        entry.update(rule)
        same_view = [
            {k: v for k, v in r.items() if k != "name"}
            for r in _rules
            if r["match"]["route"] == name
        ]
        if entry not in same_view:  # a module imported twice declares nothing new
            suffix = f"#{len(same_view) + 1}" if same_view else ""
            _rules.append({"name": name + suffix, **entry})
        return view

    return decorate


def registered_rules() -> list[dict[str, Any]]:
    """Every rule recorded by ``@ratelimit`` so far, in declaration order."""
    return [dict(r) for r in _rules]
