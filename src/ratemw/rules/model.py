"""Typed, frozen models of a rules file (see docs/rules.md).

Every value object is a frozen slotted dataclass; ``line`` fields carry the
1-based source line (0 when the object was built in code) so later checks can
point at the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "ALGORITHMS",
    "IDENTITY_KINDS",
    "MAX_COUNT",
    "MAX_DURATION_SECONDS",
    "MAX_PERIOD_SECONDS",
    "MIN_SYNC_INTERVAL_SECONDS",
    "NAME_PATTERN",
    "Defaults",
    "IdentityConfig",
    "JWTConfig",
    "LeaseConfig",
    "LimitSpec",
    "Match",
    "Penalty",
    "Rate",
    "Rollout",
    "Rule",
    "RuleSet",
]

Algorithm = Literal["token_bucket", "fixed_window", "sliding_window", "gcra"]
ALGORITHMS: tuple[str, ...] = ("token_bucket", "fixed_window", "sliding_window", "gcra")
Mode = Literal["enforce", "shadow"]
StoreErrorPolicy = Literal["local", "open", "closed"]
HeaderStyle = Literal["ietf", "legacy", "both", "none"]
Action = Literal["reject", "challenge"]
MissingIdentity = Literal["ip", "skip"]
#: what a rule does when the user getter (or tier resolver) of an adapter raised
IdentityError = Literal["ip", "skip"]

#: identity kinds without an argument; ``header:NAME`` and ``jwt:CLAIM`` take one.
IDENTITY_KINDS: tuple[str, ...] = ("ip", "user", "api_key", "tenant", "global")

# Bounds on numbers (docs/security.md). Both the local store (Python floats) and
# Redis (Lua doubles, exact for integers up to 2**53; times are microseconds, and
# the clock alone is about 1.8e15 us) must represent every value and every sum the
# algorithms form from them. Counts stay far below 2**53 even multiplied by a cost;
# one period, or the time to refill a whole burst, stays below ten years (3.2e14
# us), so "now + twice the bucket" is below 2**53 for the next seventy years.

#: the largest count in a limit, burst, cost, concurrency or lease size
MAX_COUNT = 10**9
#: the longest period of a limit, and the longest time a bucket takes to refill
MAX_PERIOD_SECONDS = 3650 * 86400
#: the longest duration of a setting (penalty ban, JWT leeway, lease sync interval)
MAX_DURATION_SECONDS = 3650 * 86400
#: the shortest lease sync interval (Redis expiries are whole milliseconds)
MIN_SYNC_INTERVAL_SECONDS = 0.001
#: what a rule or tier name may be: it is written into response headers (as an sf-string
#: of RFC 8941), problem+json, metric labels and Redis keys, so no space, quote,
#: backslash, comma, semicolon, non-ASCII or control character. The punctuation allowed
#: covers the names integrations derive from views ("app.views.<locals>.list#2").
NAME_PATTERN = r"[A-Za-z0-9_][A-Za-z0-9_.:#<>/-]{0,255}"


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` requests per ``period_seconds``, as written in ``text``."""

    count: int
    period_seconds: float
    text: str = ""

    @property
    def per_second(self) -> float:
        return self.count / self.period_seconds

    def __str__(self) -> str:
        return self.text or f"{self.count}/{self.period_seconds:g}s"


#: one limit, a list (all must pass), or a map from tier to limits.
LimitSpec = tuple[Rate, ...] | Mapping[str, tuple[Rate, ...]]


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule applies to; ``None`` means "any"."""

    path: str | None = None
    methods: frozenset[str] | None = None
    host: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # (lower-case name, value or "*")
    route: str | None = None


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """How much quota a process leases from Redis and how often it reconciles."""

    size: int | None = None  # None means "auto"
    sync_interval: float = 0.2


@dataclass(frozen=True, slots=True)
class Penalty:
    """Ban an identity rejected at ``after`` rate for ``ban_seconds``."""

    after: Rate
    ban_seconds: float


@dataclass(frozen=True, slots=True)
class Defaults:
    """Values every rule inherits unless it says otherwise."""

    identity: tuple[str, ...] = ("ip",)
    algorithm: str = "token_bucket"
    on_store_error: str = "local"
    lease: LeaseConfig = LeaseConfig()
    headers: str = "ietf"
    mode: str = "enforce"
    action: str = "reject"
    on_missing_identity: str = "ip"
    on_identity_error: str = "ip"


@dataclass(frozen=True, slots=True)
class JWTConfig:
    """How to verify a bearer JWT before trusting its claims."""

    algorithms: tuple[str, ...] = ("HS256",)
    secret_env: str | None = None
    public_key_file: str | None = None
    user_claim: str = "sub"
    tenant_claim: str = "tenant"
    tier_claim: str = "plan"
    audience: str | None = None
    issuer: str | None = None
    leeway_seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class IdentityConfig:
    """How identities are derived from a request."""

    trusted_proxies: tuple[str, ...] = ()
    ipv6_prefix: int = 64
    api_key_header: str = "x-api-key"  # stored lower-case
    jwt: JWTConfig | None = None


@dataclass(frozen=True, slots=True)
class Rollout:
    """Enforce for a stable share of identities; the rest run in shadow."""

    enforce_percent: float = 100.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One rule after defaults are applied.

    Exactly one of ``limit`` and ``concurrency`` is set. ``burst`` is the
    explicit burst, or ``None`` for "the limit's count".
    """

    name: str
    match: Match
    identity: tuple[str, ...]
    algorithm: str = "token_bucket"
    limit: LimitSpec | None = None
    burst: int | None = None
    cost: int = 1
    concurrency: int | None = None
    mode: str = "enforce"
    lease: LeaseConfig = LeaseConfig()
    on_store_error: str = "local"
    headers: str = "ietf"
    overrides: tuple[str, ...] = ()
    on_missing_identity: str = "ip"
    action: str = "reject"
    penalty: Penalty | None = None
    on_identity_error: str = "ip"
    line: int = 0

    @property
    def tiered(self) -> bool:
        return isinstance(self.limit, Mapping)

    def rates(self, tier: str | None = None) -> tuple[Rate, ...]:
        """The rates that apply for ``tier`` (all of them for an untiered rule)."""
        if self.limit is None:
            return ()
        if isinstance(self.limit, Mapping):
            return self.limit.get(tier or "", ())
        return self.limit


@dataclass(frozen=True, slots=True)
class RuleSet:
    """A whole rules file: what the compiler turns into a ``Snapshot``."""

    rules: tuple[Rule, ...] = ()
    defaults: Defaults = Defaults()
    identity: IdentityConfig = IdentityConfig()
    tiers: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    rollout: Rollout | None = None
    version: int = 1
    source: str = "<rules>"
    digest: str = ""  # sha256 of the canonical parsed document: the version

    @property
    def default_tier(self) -> str | None:
        return self.tiers[0] if self.tiers else None
