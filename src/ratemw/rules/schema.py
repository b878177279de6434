"""The rules file's schema: the keys of each section and what their values become.

:class:`RulesReader` turns a parsed document into a typed :class:`RuleSet` (rules
inherit ``defaults``), reporting unknown keys with a "did you mean", wrong types,
missing keys and bad notation; values are checked later (:mod:`ratemw.rules.validate`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from functools import partial
from typing import Any

from ratemw.rules._source import Path
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
from ratemw.rules.names import name_problem, shown
from ratemw.rules.notation import split_limits
from ratemw.rules.reader import LISTS, Conv, DataReader, describe

__all__ = ["RulesReader"]

# Settings that are plain strings in the model; validate.py checks their values.
_STRING_SETTINGS = ("algorithm", "on_store_error", "headers", "mode", "action")
_JWT_STRINGS = (
    "secret_env", "public_key_file", "user_claim", "tenant_claim", "tier_claim", "audience",
    "issuer",
)  # fmt: skip


class RulesReader(DataReader):
    """Reads a whole rules document (:meth:`ruleset`); problems land in ``problems``."""

    def ruleset(self, data: Any, digest: str) -> tuple[RuleSet, list[Path]]:
        """The rule set of ``data`` (``digest``: its digest) and each rule's path."""
        empty = RuleSet(source=self.doc.source, digest=digest)
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
        if not isinstance(raw_rules, LISTS):
            self.error(("rules",), f"rules must be a list, got {describe(raw_rules)}")
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
        fields: dict[str, Conv] = {k: self.string for k in _STRING_SETTINGS}
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
        fields: dict[str, Conv] = {k: self.string for k in _JWT_STRINGS}
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
        self.error(path, f"{what} must be 'auto' or an integer, got {describe(value)}")
        return None

    def rates(self, value: Any, path: Path, what: str) -> tuple[Rate, ...] | None:
        texts: list[tuple[Path, str]] = []
        if isinstance(value, str):
            texts = [(path, value)]
        elif isinstance(value, LISTS) and value:
            for i, item in enumerate(value):
                got = self.string(item, (*path, i), f"{what} item")
                if got is None:
                    return None
                texts.append(((*path, i), got))
        else:
            self.error(
                path, f"{what} must be a limit like '5/minute' or a list, got {describe(value)}"
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
        fields: dict[str, Conv] = {k: self.string for k in _STRING_SETTINGS}
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
