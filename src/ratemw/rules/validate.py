"""Check the values of a :class:`RuleSet` and how its rules relate.

Every problem is collected (never only the first). Errors: unknown setting
values, rates of zero or less, burst below the cost, unparsable paths,
undeclared tiers, ``overrides`` naming no rule or forming a cycle, bad
allow/deny entries, a lease above the burst, and conflicts (two rules with the
same match, identity, mode and kind that should be one rule with a list of
limits), tier names outside :data:`~ratemw.rules.model.NAME_PATTERN`, and numbers
beyond what both the local and the Redis store represent exactly (counts above
:data:`~ratemw.rules.model.MAX_COUNT`, a bucket that takes longer than
:data:`~ratemw.rules.model.MAX_PERIOD_SECONDS` to refill, durations above
:data:`~ratemw.rules.model.MAX_DURATION_SECONDS`). Warnings: a burst above one
day of the rate, a sliding window over a day, and a rule that an overriding
rule hides everywhere. The checks of how rules relate are :mod:`ratemw.rules.relations`.

Allow/deny entries are an IP address (``127.0.0.1``, ``::1``), a network
(``203.0.113.0/24``) or ``kind:value`` with kind ``user``, ``api_key``,
``tenant``, ``ip`` (value an address or network) or ``header:NAME:VALUE``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from typing import Any

from ratemw.addresses import list_entry_problem
from ratemw.errors import Problem
from ratemw.rules._source import Path, Position
from ratemw.rules.model import (
    ALGORITHMS,
    IDENTITY_KINDS,
    MAX_COUNT,
    MAX_DURATION_SECONDS,
    MAX_PERIOD_SECONDS,
    MIN_SYNC_INTERVAL_SECONDS,
    Rate,
    Rule,
    RuleSet,
)
from ratemw.rules.names import name_problem, shown
from ratemw.rules.paths import parse_path
from ratemw.rules.relations import check_conflicts, check_cycles, check_overrides

__all__ = ["Locator", "validate"]

#: ``locate(rule_index or None, path inside the rule or document, key)`` -> (line, column)
Locator = Callable[[int | None, Path, bool], Position]

SETTINGS: dict[str, tuple[str, ...]] = {
    "algorithm": ALGORITHMS,
    "on_store_error": ("local", "open", "closed"),
    "headers": ("ietf", "legacy", "both", "none"),
    "mode": ("enforce", "shadow"),
    "action": ("reject", "challenge"),
    "on_missing_identity": ("ip", "skip"),
    "on_identity_error": ("ip", "skip"),
}
JWT_ALGORITHMS = (
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
    "PS256", "PS384", "PS512", "EdDSA",
)  # fmt: skip
_IDENTITY_HELP = (*IDENTITY_KINDS, "header:NAME", "jwt:CLAIM")
DAY = 86400.0
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 5.6.2 tchar


def validate(ruleset: RuleSet, locate: Locator | None = None) -> list[Problem]:
    """Return every error and warning about ``ruleset``.

    ``locate`` maps a rule index (``None`` for the document) and a path to a
    1-based (line, column); without it, problems point at ``Rule.line``.
    """
    return _Validator(ruleset, locate).run()


class _Validator:
    def __init__(self, ruleset: RuleSet, locate: Locator | None) -> None:
        self.rs = ruleset
        self.locate = locate or self._rule_line
        self.problems: list[Problem] = []

    def _rule_line(self, index: int | None, path: Path, key: bool) -> Position:
        return (self.rs.rules[index].line, 0) if index is not None else (0, 0)

    def add(self, index: int | None, path: Path, reason: str, warn: bool = False) -> None:
        """Record a problem; ``index`` names the rule it is about (prefixed to the reason)."""
        # Tier names are keys; every other problem is about a value.
        line, col = self.locate(index, path, path[:1] == ("limit",) and len(path) == 2)
        if index is not None:
            reason = f"rule {shown(self.rs.rules[index].name)}: {reason}"
        severity = "warning" if warn else "error"
        self.problems.append(Problem(self.rs.source, line, col, reason, severity))

    def run(self) -> list[Problem]:
        self.document()
        names: dict[str, int] = {}
        for index, rule in enumerate(self.rs.rules):
            if rule.name in names:
                first = self.rs.rules[names[rule.name]].line
                self.add(index, ("name",), f"duplicate rule name (first at line {first})")
            else:
                names[rule.name] = index
            self.rule(index, rule)
        check_overrides(self.rs.rules, names, self.add)
        check_cycles(self.rs.rules, names, self.add)
        check_conflicts(self.rs.rules, self.add)
        return self.problems

    # -- document ------------------------------------------------------------

    def document(self) -> None:
        rs, d, ident = self.rs, self.rs.defaults, self.rs.identity
        for name, allowed in SETTINGS.items():
            self.setting(None, ("defaults", name), name, getattr(d, name), allowed)
        self.identities(None, ("defaults", "identity"), d.identity)
        self.lease(None, ("defaults", "lease"), d.lease.size, d.lease.sync_interval)
        for i, proxy in enumerate(ident.trusted_proxies):
            if not _is_network(proxy):
                reason = f"trusted_proxies: {proxy!r} is not an IP address or network"
                self.add(None, ("identity", "trusted_proxies", i), reason)
        if not 0 <= ident.ipv6_prefix <= 128:
            reason = f"ipv6_prefix must be between 0 and 128, got {ident.ipv6_prefix}"
            self.add(None, ("identity", "ipv6_prefix"), reason)
        if not _TOKEN.fullmatch(ident.api_key_header):
            reason = f"api_key_header {ident.api_key_header!r} is not a header name"
            self.add(None, ("identity", "api_key_header"), reason)
        if ident.jwt is not None:
            path: Path = ("identity", "jwt")
            if (ident.jwt.secret_env is None) == (ident.jwt.public_key_file is None):
                reason = "identity.jwt needs exactly one of 'secret_env' and 'public_key_file'"
                self.add(None, path, reason)
            if not ident.jwt.algorithms:
                self.add(None, (*path, "algorithms"), "identity.jwt.algorithms must not be empty")
            for i, alg in enumerate(ident.jwt.algorithms):
                self.setting(None, (*path, "algorithms", i), "JWT algorithm", alg, JWT_ALGORITHMS)
        for i, tier in enumerate(rs.tiers):
            if tier in rs.tiers[:i]:
                self.add(None, ("tiers", i), f"tier {shown(tier)} is declared twice")
            bad_name = name_problem(tier, "tier name")
            if bad_name:
                self.add(None, ("tiers", i), bad_name)
        if ident.jwt is not None and ident.jwt.leeway_seconds > MAX_DURATION_SECONDS:
            self.add(None, ("identity", "jwt", "leeway"), _too_long("identity.jwt.leeway"))
        for section in ("allow", "deny"):
            for i, entry in enumerate(getattr(rs, section)):
                bad = list_entry_problem(entry)
                if bad:
                    self.add(None, (section, i), f"{section} entry {entry!r}: {bad}")
        if rs.rollout is not None and not 0 <= rs.rollout.enforce_percent <= 100:
            got = rs.rollout.enforce_percent
            reason = f"rollout.enforce_percent must be between 0 and 100, got {got:g}"
            self.add(None, ("rollout", "enforce_percent"), reason)

    def setting(
        self, index: int | None, path: Path, name: str, value: Any, allowed: tuple[str, ...]
    ) -> None:
        if value not in allowed:
            self.add(
                index, path, f"unknown {name} {value!r} (expected one of: {', '.join(allowed)})"
            )

    def identities(self, index: int | None, path: Path, identity: tuple[str, ...]) -> None:
        if not identity:
            self.add(index, path, "identity must name at least one identity")
        for item in identity:
            kind, sep, arg = item.partition(":")
            if (not sep and item in IDENTITY_KINDS) or (kind == "header" and _TOKEN.fullmatch(arg)):
                continue
            if kind == "jwt" and arg and not any(c.isspace() for c in arg):
                if self.rs.identity.jwt is None:
                    reason = f"identity {item!r} needs an 'identity.jwt' section to verify tokens"
                    self.add(index, path, reason)
                continue
            self.setting(index, path, "identity", item, _IDENTITY_HELP)

    def lease(self, index: int | None, path: Path, size: int | None, interval: float) -> None:
        if size is not None and size < 1:
            self.add(index, (*path, "size"), f"lease size must be 'auto' or at least 1, got {size}")
        elif size is not None and size > MAX_COUNT:
            self.add(index, (*path, "size"), _too_big("lease size", size))
        if interval <= 0:
            self.add(index, (*path, "sync_interval"), "lease sync_interval must be above zero")
        elif interval < MIN_SYNC_INTERVAL_SECONDS:
            reason = "lease sync_interval must be at least 1ms (Redis expiries are whole ms)"
            self.add(index, (*path, "sync_interval"), reason)
        elif interval > MAX_DURATION_SECONDS:
            self.add(index, (*path, "sync_interval"), _too_long("lease sync_interval"))

    # -- one rule ------------------------------------------------------------

    def rule(self, index: int, rule: Rule) -> None:
        d = self.rs.defaults
        # Inherited values were checked once under "defaults"; report only what the rule sets.
        for name, allowed in SETTINGS.items():
            if getattr(rule, name) != getattr(d, name):
                self.setting(index, (name,), name, getattr(rule, name), allowed)
        if rule.identity != d.identity:
            self.identities(index, ("identity",), rule.identity)
        if rule.lease != d.lease:
            self.lease(index, ("lease",), rule.lease.size, rule.lease.sync_interval)
        if rule.match.path is not None:
            try:
                parse_path(rule.match.path)
            except ValueError as exc:
                self.add(index, ("match", "path"), f"unparsable path: {exc}")
        if rule.match.methods is not None and not rule.match.methods:
            self.add(
                index, ("match", "methods"), "match.methods is empty: the rule matches nothing"
            )
        for name, value in (
            ("concurrency", rule.concurrency), ("cost", rule.cost), ("burst", rule.burst)
        ):  # fmt: skip
            if value is not None and value < 1:
                self.add(index, (name,), f"{name} must be at least 1, got {value}")
            elif value is not None and value > MAX_COUNT:
                self.add(index, (name,), _too_big(name, value))
        if rule.penalty is not None:
            if rule.penalty.ban_seconds <= 0:
                self.add(index, ("penalty", "ban"), "penalty ban must be longer than zero")
            elif rule.penalty.ban_seconds > MAX_DURATION_SECONDS:
                self.add(index, ("penalty", "ban"), _too_long("penalty ban"))
            self.rate(index, ("penalty", "after"), rule.penalty.after)
        if rule.limit is None:
            if rule.concurrency is None:
                self.add(index, (), "needs exactly one of 'limit' and 'concurrency'")
            return
        groups: list[tuple[Path, tuple[Rate, ...]]]
        if isinstance(rule.limit, Mapping):
            groups = [(("limit", tier), rates) for tier, rates in rule.limit.items()]
            declared = ", ".join(self.rs.tiers) or "none"
            for tier in rule.limit:
                if tier not in self.rs.tiers:
                    reason = f"tier {tier!r} is not declared in 'tiers' (declared: {declared})"
                    self.add(index, ("limit", tier), reason)
        else:
            groups = [(("limit",), rule.limit)]
        for path, rates in groups:
            for rate in rates:
                self.rate(index, path, rate)
            self.burst(index, path, rule, [r for r in rates if r.count > 0 < r.period_seconds])

    def rate(self, index: int, path: Path, rate: Rate) -> None:
        if rate.count <= 0 or rate.period_seconds <= 0:
            self.add(index, path, f"rate of zero or less in limit {str(rate)!r}")

    def burst(self, index: int, path: Path, rule: Rule, rates: list[Rate]) -> None:
        if not rates:
            return
        at: Path = ("burst",)
        burst, what = rule.burst or 0, f"burst {rule.burst}"
        if rule.burst is None:
            smallest = min(rates, key=lambda r: r.count)
            burst, at = smallest.count, path
            what = f"the burst of limit {str(smallest)!r} ({burst})"
        if 1 <= burst < rule.cost:
            self.add(index, at, f"{what} is below the cost {rule.cost}: no request could pass")
        size = rule.lease.size
        if size is not None and size > burst >= 1:
            self.add(index, ("lease", "size"), f"lease size {size} is larger than {what}")
        if rule.burst is not None and 1 <= rule.burst <= MAX_COUNT:
            slowest = min(rates, key=lambda r: r.per_second)
            # The Redis script keeps "now + twice the bucket" in microseconds below 2**53.
            fill = rule.burst / slowest.per_second
            if fill > MAX_PERIOD_SECONDS:
                most = MAX_PERIOD_SECONDS // 86400
                reason = (
                    f"burst {rule.burst} takes {fill / DAY:.0f} days to refill at limit "
                    f"{str(slowest)!r}, longer than the maximum of {most} days"
                )
                self.add(index, ("burst",), reason)
            elif rule.burst > slowest.per_second * DAY:
                reason = f"burst {rule.burst} is more than one day of limit {str(slowest)!r}"
                self.add(index, ("burst",), reason, warn=True)
        longest = max(rates, key=lambda r: r.period_seconds)
        if rule.algorithm == "sliding_window" and longest.period_seconds > DAY:
            reason = f"sliding window of {str(longest)!r} is longer than a day"
            self.add(index, path, f"{reason}; consider fixed_window or token_bucket", warn=True)


def _too_big(name: str, value: int) -> str:
    written = str(value) if value < 10**100 else "with more than 100 digits"
    return f"{name} {written} is above the maximum of {MAX_COUNT:_}"


def _too_long(name: str) -> str:
    return f"{name} is longer than the maximum of {MAX_DURATION_SECONDS // 86400} days"


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True
