"""The Redis side of operations: bans, brownout, penalty counts and top offenders.

Layout (``<p>`` is ``ratemw:<app>:``, as for leases; identities are keyed digests or,
for ``identity: ip`` rules, the address):

- ``<p>{bans}:z``  sorted set, member ``rule|digest``, score the ban's end (epoch s)
- ``<p>{bans}:i``  hash, same member -> JSON ``{rule, digest, identity, until, reason}``
- ``<p>{meta}:brownout``  JSON of the brownout, expiring at its deadline
- ``<p>{pen|rule|digest}:n``  rejections in the current penalty window (expires with it)
- ``<p>{top}:rule:minute``  sorted set of rejections per identity in one minute
- ``<p>{top}:rules``  set of the rules with offenders (both expire an hour after the last)

Every function takes a redis-py client (single server or Cluster) and raises what it
raises; callers decide what a failure means.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ratemw.store._keys import safe_name

__all__ = [
    "TOP_TTL_SECONDS",
    "Ban",
    "Brownout",
    "Layout",
]

TOP_TTL_SECONDS = 3600  # top-offender minutes kept


@dataclass(frozen=True, slots=True)
class Ban:
    """One identity banned from one rule until ``until`` (epoch seconds)."""

    rule: str
    digest: str
    identity: str  # what operators see: the address, or ``h:`` and the digest
    until: float
    reason: str = ""

    @property
    def member(self) -> str:
        return f"{self.rule}|{self.digest}"


@dataclass(frozen=True, slots=True)
class Brownout:
    """Scale the limits of ``rules`` (all when empty) for ``tiers`` (all when empty) by
    ``factor`` until ``until`` (epoch seconds)."""

    factor: float
    until: float
    tiers: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    reason: str = ""

    def __post_init__(self) -> None:
        if not (0.0 < self.factor <= 1.0) or not math.isfinite(self.factor):
            raise ValueError(f"brownout factor must be in (0, 1], not {self.factor!r}")

    def covers(self, rule: str, tier: str | None) -> bool:
        if self.rules and rule not in self.rules:
            return False
        return not self.tiers or (tier is not None and tier in self.tiers)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Brownout:
        data = json.loads(text)
        return cls(
            float(data["factor"]),
            float(data["until"]),
            tuple(data.get("tiers") or ()),
            tuple(data.get("rules") or ()),
            str(data.get("reason") or ""),
        )


class Layout:
    """Key names and operations of one application's operations state."""

    def __init__(self, app: str = "default") -> None:
        self.prefix = f"ratemw:{safe_name(app)}:"
        self.bans_z = f"{self.prefix}{{bans}}:z"
        self.bans_i = f"{self.prefix}{{bans}}:i"
        self.brownout_key = f"{self.prefix}{{meta}}:brownout"

    # -- bans ------------------------------------------------------------------

    def add_ban(self, client: Any, ban: Ban) -> None:
        self.add_bans(client, [ban])

    def add_bans(self, client: Any, bans: Iterable[Ban]) -> None:
        pipe = client.pipeline(transaction=False)
        for ban in bans:
            pipe.zadd(self.bans_z, {ban.member: ban.until})
            pipe.hset(self.bans_i, ban.member, json.dumps(asdict(ban), separators=(",", ":")))
        pipe.execute()

    def remove_ban(self, client: Any, rule: str, digest: str) -> bool:
        member = f"{rule}|{digest}"
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.bans_z, member)
        pipe.hdel(self.bans_i, member)
        removed, _ = pipe.execute()
        return bool(removed)

    def active_bans(self, client: Any, now: float) -> dict[str, dict[str, float]]:
        """rule -> digest -> until, for bans still running at ``now``."""
        out: dict[str, dict[str, float]] = {}
        for member, until in client.zrangebyscore(self.bans_z, f"({now}", "+inf", withscores=True):
            rule, _, digest = _text(member).rpartition("|")
            out.setdefault(rule, {})[digest] = float(until)
        return out

    def list_bans(self, client: Any, now: float) -> list[Ban]:
        """Running bans with what operators see, soonest end first; drops ended ones."""
        self.expire_bans(client, now)
        members = client.zrangebyscore(self.bans_z, f"({now}", "+inf", withscores=True)
        if not members:
            return []
        infos = client.hmget(self.bans_i, [m for m, _ in members])
        bans = []
        for (member, until), info in zip(members, infos, strict=True):
            rule, _, digest = _text(member).rpartition("|")
            data = json.loads(info) if info else {}
            identity, reason = data.get("identity", f"h:{digest}"), data.get("reason", "")
            bans.append(Ban(rule, digest, str(identity), float(until), str(reason)))
        return bans

    def expire_bans(self, client: Any, now: float) -> None:
        ended = client.zrangebyscore(self.bans_z, "-inf", now)
        if ended:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self.bans_z, *ended)
            pipe.hdel(self.bans_i, *ended)
            pipe.execute()

    # -- penalty counts --------------------------------------------------------

    def penalty_key(self, rule: str, digest: str) -> str:
        return f"{self.prefix}{{pen|{safe_name(rule)}|{digest}}}:n"

    def add_rejections(
        self,
        client: Any,
        counts: Mapping[tuple[str, str], int],
        window_seconds: Mapping[str, float],
    ) -> dict[tuple[str, str], int]:
        """Add this process's rejections per (rule, digest); the fleet-wide totals of
        the current penalty window come back."""
        pipe = client.pipeline(transaction=False)
        order = list(counts.items())
        for (rule, digest), n in order:
            key = self.penalty_key(rule, digest)
            # The window starts with the first rejection and its key expires with it.
            pipe.set(key, 0, ex=max(1, math.ceil(window_seconds[rule])), nx=True)
            pipe.incrby(key, n)
        replies = pipe.execute()
        return {pair: int(replies[2 * i + 1]) for i, (pair, _) in enumerate(order)}

    # -- brownout --------------------------------------------------------------

    def set_brownout(self, client: Any, brownout: Brownout, now: float) -> None:
        ttl_ms = max(1, math.ceil((brownout.until - now) * 1000))
        client.set(self.brownout_key, brownout.to_json(), px=ttl_ms)

    def clear_brownout(self, client: Any) -> bool:
        return bool(client.delete(self.brownout_key))

    def brownout(self, client: Any) -> Brownout | None:
        raw = client.get(self.brownout_key)
        return None if raw is None else Brownout.from_json(raw)

    # -- top offenders ---------------------------------------------------------

    def top_key(self, rule: str, minute: int) -> str:
        return f"{self.prefix}{{top}}:{safe_name(rule)}:{minute}"

    def push_top(
        self, client: Any, rule: str, deltas: Iterable[tuple[str, int]], now: float
    ) -> None:
        key = self.top_key(rule, int(now // 60))
        pipe = client.pipeline(transaction=False)
        for identity, n in deltas:
            pipe.zincrby(key, n, identity)
        pipe.expire(key, TOP_TTL_SECONDS)
        pipe.sadd(f"{self.prefix}{{top}}:rules", rule)
        pipe.expire(f"{self.prefix}{{top}}:rules", TOP_TTL_SECONDS)  # rules seen lately
        pipe.execute()

    def top(
        self, client: Any, now: float, *, rule: str | None = None, minutes: int = 5, n: int = 20
    ) -> dict[str, list[tuple[str, int]]]:
        """rule -> [(identity, rejections)] over the last ``minutes``, largest first."""
        rules = (
            [rule]
            if rule
            else sorted(_text(r) for r in client.smembers(f"{self.prefix}{{top}}:rules"))
        )
        current = int(now // 60)
        out: dict[str, list[tuple[str, int]]] = {}
        for name in rules:
            totals: dict[str, float] = {}
            for minute in range(current - max(1, minutes) + 1, current + 1):
                for member, score in client.zrange(
                    self.top_key(name, minute), 0, -1, withscores=True
                ):
                    who = _text(member)
                    totals[who] = totals.get(who, 0.0) + float(score)
            ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))[:n]
            if ranked:
                out[name] = [(who, int(count)) for who, count in ranked]
        return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
