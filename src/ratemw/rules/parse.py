"""Turn a rules file (see docs/RULES.md) into a typed :class:`RuleSet`.

Parsing checks the schema (unknown keys, types, required keys) and converts
notation (limits, durations, identities); :mod:`ratemw.rules.validate` then
checks values and how rules relate. Both collect every problem in one pass.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

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
from ratemw.rules.model import (
    Defaults,
    IdentityConfig,
    JWTConfig,
    LeaseConfig,
    LimitSpec,
    Match,
    Penalty,
    Rate,
    Rollout,
    Rule,
    RuleSet,
)
from ratemw.rules.notation import parse_duration, parse_rate, split_limits
from ratemw.rules.validate import name_problem, shown, validate

__all__ = ["load_ruleset", "parse_ruleset", "ruleset_from_data"]

log = logging.getLogger("ratemw.rules")

T = TypeVar("T")

_LISTS = (list, tuple)  # tuples too, for rules written as Python data
# Settings that are plain strings in the model; validate.py checks their values.
_STRING_SETTINGS = ("algorithm", "on_store_error", "headers", "mode", "action")
_JWT_STRINGS = (
    "secret_env", "public_key_file", "user_claim", "tenant_claim", "tier_claim", "audience",
    "issuer",
)  # fmt: skip
_Conv = Callable[[Any, Path, str], Any]


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
    reader = _Reader(doc)
    ruleset, rule_paths = reader.ruleset(doc.data)

    def locate(index: int | None, path: Path, key: bool) -> Position:
        base = rule_paths[index] if index is not None else ()
        return doc.locate((*base, *path), key=key)

    reader.problems.extend(validate(ruleset, locate))
    return ruleset, reader.problems


class _Reader:
    """Schema checks and typed conversion; every problem lands in ``problems``."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def error(self, path: Path, reason: str, *, key: bool = False) -> None:
        line, col = self.doc.locate(path, key=key)
        self.problems.append(Problem(self.doc.source, line, col, reason))

    # -- generic helpers ---------------------------------------------------

    def mapping(
        self, value: Any, path: Path, allowed: Sequence[str] | None, what: str
    ) -> dict[str, Any] | None:
        if not isinstance(value, Mapping):
            self.error(path, f"{what} must be a mapping, got {_kind(value)}")
            return None
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.error((*path, str(key)), f"{what}: key {key!r} must be a string", key=True)
            elif allowed is not None and key not in allowed:
                hint = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                mean = f"; did you mean {hint[0]!r}?" if hint else ""
                self.error((*path, key), f"unknown key {key!r} in {what}{mean}", key=True)
            else:
                out[key] = item
        return out

    def section(
        self, value: Any, path: Path, prefix: str, fields: Mapping[str, _Conv]
    ) -> dict[str, Any] | None:
        """Check a mapping against ``fields`` and convert each value (errors dropped)."""
        what = prefix.rstrip(":. ") or "the rules file"
        section = self.mapping(value, path, tuple(fields), what)
        if section is None:
            return None
        out = {}
        for key, item in section.items():
            got = fields[key](item, (*path, key), prefix + key)
            if got is not None:
                out[key] = got
        return out

    def typed(self, value: Any, path: Path, what: str, *types: type) -> Any:
        # bool is an int subclass; ``cost: true`` is a mistake, not 1.
        if isinstance(value, types) and (bool in types or not isinstance(value, bool)):
            return value
        names = {str: "a string", int: "an integer", float: "a number"}
        want = " or ".join(names.get(t, t.__name__) for t in types)
        self.error(path, f"{what} must be {want}, got {_kind(value)}")
        return None

    def string(self, value: Any, path: Path, what: str) -> str | None:
        result: str | None = self.typed(value, path, what, str)
        return result

    def lower(self, value: Any, path: Path, what: str) -> str | None:
        got = self.string(value, path, what)
        return got.strip().lower() if got is not None else None

    def integer(self, value: Any, path: Path, what: str) -> int | None:
        result: int | None = self.typed(value, path, what, int)
        return result

    def number(self, value: Any, path: Path, what: str) -> float | None:
        got = self.typed(value, path, what, int, float)
        return float(got) if got is not None else None

    def strings(self, value: Any, path: Path, what: str) -> tuple[str, ...] | None:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, _LISTS):
            self.error(path, f"{what} must be a string or a list of strings, got {_kind(value)}")
            return None
        items = [self.string(v, (*path, i), f"{what} item") for i, v in enumerate(value)]
        return tuple(i for i in items if i is not None) if None not in items else None

    def duration(self, value: Any, path: Path, what: str) -> float | None:
        return self.convert(value, path, parse_duration, what)

    def rate(self, value: Any, path: Path, what: str) -> Rate | None:
        return self.convert(value, path, parse_rate, what)

    def convert(self, value: Any, path: Path, parse: Callable[[Any], T], what: str) -> T | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.error(path, f"{what}: {exc}")
            return None

    # -- document ----------------------------------------------------------

    def ruleset(self, data: Any) -> tuple[RuleSet, list[Path]]:
        empty = RuleSet(source=self.doc.source, digest=digest_of(data))
        if data is None:
            self.error((), "the rules file is empty (expected at least 'version: 1')")
            return empty, []
        top = self.section(data, (), "", {
            "version": self.version, "defaults": self.defaults, "identity": self.identity_config,
            "tiers": self.strings, "allow": self.strings, "deny": self.strings,
            "rules": lambda v, p, w: v, "rollout": self.rollout,
        })  # fmt: skip
        if top is None:
            return empty, []
        defaults: Defaults = top.pop("defaults", Defaults())
        raw_rules = top.pop("rules", [])
        if not isinstance(raw_rules, _LISTS):
            self.error(("rules",), f"rules must be a list, got {_kind(raw_rules)}")
            raw_rules = []
        rules: list[Rule] = []
        paths: list[Path] = []
        for index, raw in enumerate(raw_rules):
            rule = self.rule(raw, ("rules", index), defaults)
            if rule is not None:
                rules.append(rule)
                paths.append(("rules", index))
        top["version"] = 1
        return replace(empty, rules=tuple(rules), defaults=defaults, **top), paths

    def version(self, value: Any, path: Path, what: str) -> None:
        if isinstance(value, bool) or value != 1:
            self.error(path, f"unsupported version {value!r}: this ratemw reads version 1")

    def rollout(self, value: Any, path: Path, what: str) -> Rollout | None:
        got = self.section(value, path, "rollout.", {"enforce_percent": self.number})
        return Rollout(**got) if got is not None else None

    def defaults(self, value: Any, path: Path, what: str) -> Defaults | None:
        lease = partial(self.lease, base=LeaseConfig())
        fields: dict[str, _Conv] = {k: self.string for k in _STRING_SETTINGS}
        fields.update(
            identity=self.identity, lease=lease, on_missing_identity=self.string,
            on_identity_error=self.string,
        )  # fmt: skip
        got = self.section(value, path, "defaults.", fields)
        return Defaults(**got) if got is not None else None

    def identity_config(self, value: Any, path: Path, what: str) -> IdentityConfig | None:
        got = self.section(value, path, "identity.", {
            "trusted_proxies": self.strings, "ipv6_prefix": self.integer,
            "api_key_header": self.lower, "jwt": self.jwt,
        })  # fmt: skip
        return IdentityConfig(**got) if got is not None else None

    def jwt(self, value: Any, path: Path, what: str) -> JWTConfig | None:
        fields: dict[str, _Conv] = {k: self.string for k in _JWT_STRINGS}
        fields.update(algorithms=self.strings, leeway=self.duration)
        got = self.section(value, path, "identity.jwt.", fields)
        if got is None:
            return None
        if "leeway" in got:
            got["leeway_seconds"] = got.pop("leeway")
        return JWTConfig(**got)

    def identity(self, value: Any, path: Path, what: str) -> tuple[str, ...] | None:
        items = self.strings(value, path, what)
        if items is None:
            return None
        if not items:
            self.error(path, f"{what} must name at least one identity")
            return None
        out = []
        for item in items:
            kind, sep, arg = item.partition(":")
            # Header names are case-insensitive (RFC 9110 5.1); keep one spelling.
            out.append(f"header:{arg.strip().lower()}" if sep and kind == "header" else item)
        return tuple(out)

    def lease(self, value: Any, path: Path, what: str, base: LeaseConfig) -> LeaseConfig | None:
        got = self.section(value, path, f"{what}.", {
            "size": self.lease_size, "sync_interval": self.duration,
        })  # fmt: skip
        if got is None:
            return None
        size = got.get("size", base.size)
        interval = got.get("sync_interval", base.sync_interval)
        return LeaseConfig(size=None if size == "auto" else size, sync_interval=interval)

    def lease_size(self, value: Any, path: Path, what: str) -> int | str | None:
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool)):
            return value  # type: ignore[no-any-return]
        self.error(path, f"{what} must be 'auto' or an integer, got {_kind(value)}")
        return None

    def rates(self, value: Any, path: Path, what: str) -> tuple[Rate, ...] | None:
        texts: list[tuple[Path, str]] = []
        if isinstance(value, str):
            texts = [(path, value)]
        elif isinstance(value, _LISTS) and value:
            for i, item in enumerate(value):
                got = self.string(item, (*path, i), f"{what} item")
                if got is None:
                    return None
                texts.append(((*path, i), got))
        else:
            self.error(
                path, f"{what} must be a limit like '5/minute' or a list, got {_kind(value)}"
            )
            return None
        rates = [self.rate(part, p, what) for p, text in texts for part in split_limits(text)]
        return tuple(r for r in rates if r is not None) if None not in rates else None

    def limit(self, value: Any, path: Path, what: str) -> LimitSpec | None:
        if not isinstance(value, Mapping):
            return self.rates(value, path, what)
        section = self.mapping(value, path, None, what) or {}
        if not section:
            self.error(path, f"{what} must map at least one tier to a limit")
            return None
        tiers = {t: self.rates(v, (*path, t), f"{what} for tier {t!r}") for t, v in section.items()}
        if any(rates is None for rates in tiers.values()):
            return None
        return {tier: rates for tier, rates in tiers.items() if rates is not None}

    def rule(self, value: Any, path: Path, defaults: Defaults) -> Rule | None:
        name = value.get("name") if isinstance(value, Mapping) else None
        if not (isinstance(name, str) and name.strip()):
            name = f"rules[{path[-1]}]"  # a stand-in, so the rest is still checked
        where = f"rule {shown(name)}"
        fields: dict[str, _Conv] = {k: self.string for k in _STRING_SETTINGS}
        fields.update({k: self.integer for k in ("burst", "cost", "concurrency")})
        fields.update(
            name=self.string, match=self.match, identity=self.identity, limit=self.limit,
            lease=partial(self.lease, base=defaults.lease), overrides=self.strings,
            on_missing_identity=self.string, on_identity_error=self.string,
            penalty=self.penalty,
        )  # fmt: skip
        got = self.section(value, path, f"{where}: ", fields)
        if got is None:
            return None
        for key in ("name", "match"):
            if key not in value:
                self.error(path, f"{where}: missing required key {key!r}")
        if isinstance(value.get("name"), str) and not value["name"].strip():
            self.error((*path, "name"), f"{where}: name must not be empty")
        elif isinstance(value.get("name"), str):
            # Names reach response headers, problem+json, metric labels and Redis keys.
            bad_name = name_problem(value["name"])
            if bad_name:
                self.error((*path, "name"), bad_name)
        if ("limit" in value) == ("concurrency" in value):
            state = "both" if "limit" in value else "neither"
            self.error(
                path, f"{where}: needs exactly one of 'limit' and 'concurrency', has {state}"
            )
        if "limit" not in got and "concurrency" not in got:
            # A rule with a broken or missing limit still yields a rule, so that
            # later checks (names, overrides, conflicts) report their problems too.
            got["limit"] = ()
        if "match" not in got:
            return None
        got["name"] = name
        inherited = {k: getattr(defaults, k) for k in Defaults.__dataclass_fields__}
        line = self.doc.positions.get(path, (0, 0))[0]
        return Rule(**{**inherited, **got, "line": line})

    def match(self, value: Any, path: Path, what: str) -> Match | None:
        got = self.section(value, path, f"{what}.", {
            "path": self.string, "host": self.lower, "route": self.string,
            "methods": self.methods, "headers": self.headers,
        })  # fmt: skip
        return Match(**got) if got is not None else None

    def methods(self, value: Any, path: Path, what: str) -> frozenset[str] | None:
        methods = self.strings(value, path, what)
        return frozenset(m.strip().upper() for m in methods) if methods is not None else None

    def headers(self, value: Any, path: Path, what: str) -> tuple[tuple[str, str], ...] | None:
        headers = self.mapping(value, path, None, what)
        if headers is None:
            return None
        pairs = []
        for header, want in headers.items():
            if isinstance(want, (int, float)) and not isinstance(want, bool):
                want = str(want)  # "X-Version: 2" in YAML is an int
            got = self.string(want, (*path, header), f"{what} {header!r}")
            if got is not None:
                pairs.append((header.strip().lower(), got))
        return tuple(sorted(pairs))

    def penalty(self, value: Any, path: Path, what: str) -> Penalty | None:
        got = self.section(value, path, f"{what}.", {"after": self.rate, "ban": self.duration})
        if got is None:
            return None
        missing = [k for k in ("after", "ban") if k not in value]
        if missing:
            self.error(path, f"{what} needs {' and '.join(map(repr, missing))}")
        if "after" not in got or "ban" not in got:
            return None
        return Penalty(after=got["after"], ban_seconds=got["ban"])


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if type(value) in names:
        return f"{names[type(value)]} ({value!r})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
