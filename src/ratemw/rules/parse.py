"""Turn a rules file (see docs/RULES.md) into a typed :class:`RuleSet`.

The entry points: read the bytes (bounded), parse them (:mod:`ratemw.rules._source`),
check the schema and convert notation (:mod:`ratemw.rules.schema`), then check values
and how rules relate (:mod:`ratemw.rules.validate`). Every problem is collected in one
pass; a rule set comes out only when none is an error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from ratemw.errors import ConfigError, Problem
from ratemw.rules._source import (
    Document,
    ParseLimits,
    Path,
    Position,
    check_size,
    format_for,
    load_document,
)
from ratemw.rules.model import RuleSet
from ratemw.rules.schema import RulesReader
from ratemw.rules.validate import validate

__all__ = ["load_ruleset", "parse_ruleset", "ruleset_from_data"]

log = logging.getLogger("ratemw.rules")


def parse_ruleset(
    text: str | bytes,
    source: str,
    fmt: str | None = None,
    *,
    limits: ParseLimits | None = None,
) -> tuple[RuleSet | None, list[Problem]]:
    """Parse and validate one rules document.

    ``fmt`` is ``"yaml"``, ``"toml"`` or ``"json"``; ``None`` picks it from
    ``source``'s extension (YAML by default). ``limits`` bounds the document's
    size, nesting and YAML alias expansion (default: :meth:`ParseLimits.from_env`);
    a document beyond them is refused with one problem before it is parsed.
    Returns the rule set (``None`` if any problem is an error) and every problem
    found, errors and warnings, ordered by position. Never raises for the content.
    """
    limits = ParseLimits.from_env() if limits is None else limits
    too_big = check_size(text, source, limits)
    if too_big is not None:
        return None, [too_big]
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, [Problem(source, 0, 0, f"the file is not UTF-8: {exc}")]
    doc, problems = load_document(text, source, fmt or format_for(source), limits=limits)
    if doc is None:
        return None, problems
    ruleset, more = _from_document(doc)
    problems = sorted(problems + more, key=lambda p: (p.line, p.column))
    if any(p.severity == "error" for p in problems):
        return None, problems
    return ruleset, problems


def load_ruleset(path: str | os.PathLike[str], *, limits: ParseLimits | None = None) -> RuleSet:
    """Read, parse and validate the rules file at ``path``.

    Raises ``ConfigError`` listing every problem when any is an error (and
    ``OSError`` when the file cannot be read); warnings are logged. Reads at
    most one byte more than ``limits.max_bytes`` (see :func:`parse_ruleset`).
    """
    limits = ParseLimits.from_env() if limits is None else limits
    return _accept(*parse_ruleset(read_rules(path, limits), os.fspath(path), limits=limits))


def read_rules(path: str | os.PathLike[str], limits: ParseLimits | None = None) -> bytes:
    """The bytes of the rules file at ``path``, at most one more than ``max_bytes``
    (enough for :func:`parse_ruleset` to refuse it as too large without reading it all).

    Raises ``OSError`` when the file cannot be read.
    """
    limits = ParseLimits.from_env() if limits is None else limits
    with open(path, "rb") as fh:
        return fh.read(limits.max_bytes + 1)


def ruleset_from_data(data: Mapping[str, Any], source: str = "<rules>") -> RuleSet:
    """Build a rule set from rules given as Python data (same structure as a file).

    Raises ``ConfigError`` when there is any error; warnings are logged.
    """
    return _accept(*_from_document(Document(data, source, "data")))


def _accept(ruleset: RuleSet | None, problems: list[Problem]) -> RuleSet:
    if ruleset is None or any(p.severity == "error" for p in problems):
        raise ConfigError(problems)
    for problem in problems:
        log.warning("%s", problem)
    return ruleset


def digest_of(data: Any) -> str:
    """sha256 hex of the canonical JSON of a parsed document: equal data, equal digest."""
    try:
        canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    except ValueError:  # a self-referencing YAML anchor; the file is rejected anyway
        canonical = repr(data)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _from_document(doc: Document) -> tuple[RuleSet, list[Problem]]:
    reader = RulesReader(doc)
    ruleset, rule_paths = reader.ruleset(doc.data, digest_of(doc.data))

    def locate(index: int | None, path: Path, key: bool) -> Position:
        base = rule_paths[index] if index is not None else ()
        return doc.locate((*base, *path), key=key)

    reader.problems.extend(validate(ruleset, locate))
    return ruleset, reader.problems
