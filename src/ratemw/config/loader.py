"""One loader for every source: bytes and origin in, a checked :class:`RuleSet` out.

Parse (YAML, TOML or JSON, keeping positions), validate (every problem, not the
first), compile (so a document that would not compile never reaches a limiter).
A rejected document is logged problem by problem (origin, line, reason) and
counted in :data:`LOADS` (``ratemw_rules_loads_total{result="ok"|"error"}``).

Every source (file, Consul, Redis, the control service, ``ratemw check``) comes
through here or :func:`ratemw.rules.parse.parse_ruleset`, so the bounds of
:class:`~ratemw.rules._source.ParseLimits` (size, nesting, YAML alias expansion,
long numbers) hold for all of them: a document beyond them is one more invalid
version, with a position, counted and logged like any other.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass

from ratemw.config.sources import SourceDocument
from ratemw.errors import ConfigError, Problem
from ratemw.rules._source import ParseLimits, format_for
from ratemw.rules.compile import compile_rules
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import parse_ruleset

__all__ = [
    "LOADS",
    "LoadCounter",
    "Loaded",
    "ParseLimits",
    "detect_format",
    "load",
    "load_document",
]

log = logging.getLogger("ratemw.config")


class LoadCounter:
    """Thread-safe counts of load results, the ``ratemw_rules_loads_total`` metric."""

    name = "ratemw_rules_loads_total"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"ok": 0, "error": 0}

    def add(self, result: str) -> None:
        with self._lock:
            self._counts[result] = self._counts.get(result, 0) + 1

    def counts(self) -> dict[str, int]:
        """``{"ok": n, "error": m}`` since the process started."""
        with self._lock:
            return dict(self._counts)


#: every load in this process, by result
LOADS = LoadCounter()


@dataclass(frozen=True, slots=True)
class Loaded:
    """The outcome of one load: the rule set (``None`` when rejected) and every problem."""

    origin: str
    ruleset: RuleSet | None
    problems: tuple[Problem, ...] = ()

    @property
    def ok(self) -> bool:
        return self.ruleset is not None

    @property
    def version(self) -> str | None:
        """The rules version: sha256 of the canonical parsed document."""
        return self.ruleset.digest if self.ruleset is not None else None

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    def raise_for_errors(self) -> RuleSet:
        """The rule set, or :class:`ConfigError` listing every problem."""
        if self.ruleset is None:
            raise ConfigError(self.errors or self.problems)
        return self.ruleset


_JSON_START = re.compile(rb"\s*\{")


def detect_format(origin: str, data: bytes) -> str:
    """The format named by ``origin``'s extension; else JSON when the bytes start with
    ``{``; else YAML (which also reads most JSON)."""
    named = format_for(origin.split("?", 1)[0], "")
    if named:
        return named
    # A match, not data.lstrip(): no copy of a document that may be far too large.
    return "json" if _JSON_START.match(data) else "yaml"


def load(
    data: bytes,
    origin: str,
    fmt: str | None = None,
    *,
    quiet: bool = False,
    limits: ParseLimits | None = None,
) -> Loaded:
    """Parse, validate and compile one rules document; never raises for its content.

    ``origin`` names it in problems and logs; ``fmt`` (default: :func:`detect_format`)
    is ``"yaml"``, ``"toml"`` or ``"json"``; ``limits`` bounds the document
    (default: :meth:`ParseLimits.from_env`, 1 MiB, 64 levels, 100,000 values).
    Unless ``quiet``, the result is logged and counted in :data:`LOADS`.
    """
    try:
        ruleset, found = parse_ruleset(
            data, origin, fmt or detect_format(origin, data), limits=limits
        )
    except (RecursionError, MemoryError) as exc:  # pragma: no cover - bounded before parsing
        reason = f"the document cannot be parsed within bounds ({type(exc).__name__})"
        ruleset, found = None, [Problem(origin, 0, 0, reason)]
    problems = list(found)
    if ruleset is not None:
        try:
            compile_rules(ruleset)
        except (ConfigError, ValueError, TypeError, KeyError) as exc:
            problems.append(Problem(origin, 0, 0, f"the rules do not compile: {exc}"))
            ruleset = None
    result = Loaded(origin, ruleset, tuple(problems))
    if not quiet:
        _record(result)
    return result


def load_document(doc: SourceDocument, *, quiet: bool = False) -> Loaded:
    """:func:`load` for a document from a source."""
    return load(doc.data, doc.origin, doc.fmt, quiet=quiet)


def _record(result: Loaded) -> None:
    LOADS.add("ok" if result.ok else "error")
    if result.ok:
        for problem in result.problems:
            log.warning("ratemw: %s", problem)
        return
    errors = result.errors or result.problems
    log.error(
        "ratemw: rejected rules from %s (%d error(s)); the last good rules stay live",
        result.origin,
        len(errors),
    )
    for problem in errors:
        log.error("ratemw: %s", problem)  # file:line:column: error: reason
