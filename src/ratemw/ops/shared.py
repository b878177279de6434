"""The Redis side of operations: bans, brownout, penalty counts and top offenders.

Layout (``<p>`` is ``ratemw:<app>:``, as for leases; identities are keyed digests or,
for ``identity: ip`` rules, the address):

- ``<p>{bans}:z``  sorted set, member ``rule|digest``, score the ban's end (epoch s)
- ``<p>{bans}:i``  hash, same member -> JSON ``{rule, digest, identity, until, reason,
  address}``
- ``<p>{bans}:a``  hash, same member -> the address or network of an ``ip:`` ban given
  by an address (``ratemw ban add``, ``POST /v1/bans``, ``limiter.ban``): each limiter
  maps it to its own identity key, whatever its ``ipv6_prefix``
- ``<p>{meta}:brownout``  JSON of the brownout, expiring at its deadline
- ``<p>{meta}:opsv``  version of bans and brownout: every write of either adds one, so a
  limiter fetches them only when it changed (the engine's heartbeat reads it, in the
  process registry's hash tag, at no extra round trip; docs/global.md)
- ``<p>{pen|rule|digest}:n``  rejections in the current penalty window (expires with it)
- ``<p>{top}:rule:minute``  sorted set of rejections per identity in one minute
- ``<p>{top}:rules``  set of the rules with offenders (both expire an hour after the
  first push of a minute: a process sets the TTLs once per minute key, not every push)

Writers drop ended bans (:meth:`Layout.add_bans` in the same round trip, ``list`` and
``expire``): readers never do.

The values written are :mod:`ratemw.ops.measures`' (``Ban``, ``Brownout``). Every
function takes a redis-py client (single server or Cluster) and raises what it
raises; callers decide what a failure means.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from ratemw.ops.measures import Ban, Brownout
from ratemw.store._keys import safe_name

__all__ = ["TOP_TTL_SECONDS", "Fetched", "Layout"]

TOP_TTL_SECONDS = 3600  # top-offender minutes kept

#: One push of a process's top offenders, every rule at once (the keys share ``{top}``).
#: KEYS: the rules set, then one minute key per rule. ARGV: TTL, then per rule its name,
#: 1 if this process has not yet touched this minute key (set TTLs, add to the rules
#: set), the number of offenders and (identity, count) pairs.
TOP_PUSH_LUA = """
local ttl, a, touched = tonumber(ARGV[1]), 2, false
for i = 2, #KEYS do
  local rule, touch, n = ARGV[a], ARGV[a + 1] == '1', tonumber(ARGV[a + 2])
  a = a + 3
  for _ = 1, n do
    redis.call('ZINCRBY', KEYS[i], ARGV[a + 1], ARGV[a])
    a = a + 2
  end
  if touch then
    redis.call('EXPIRE', KEYS[i], ttl)
    redis.call('SADD', KEYS[1], rule)
    touched = true
  end
end
if touched then redis.call('EXPIRE', KEYS[1], ttl) end
return #KEYS - 1
"""
TOP_PUSH_SHA = hashlib.sha1(TOP_PUSH_LUA.encode()).hexdigest()
#: (rule, [(identity, rejections)], whether to set the minute key's TTL)
TopPush = tuple[str, list[tuple[str, int]], bool]


class Layout:
    """Key names and operations of one application's operations state."""

    def __init__(self, app: str = "default") -> None:
        self.prefix = f"ratemw:{safe_name(app)}:"
        self.bans_z = f"{self.prefix}{{bans}}:z"
        self.bans_i = f"{self.prefix}{{bans}}:i"
        self.bans_a = f"{self.prefix}{{bans}}:a"
        self.brownout_key = f"{self.prefix}{{meta}}:brownout"
        self.version_key = f"{self.prefix}{{meta}}:opsv"
        self.rules_key = f"{self.prefix}{{top}}:rules"

    # -- bans ------------------------------------------------------------------

    def add_ban(self, client: Any, ban: Ban) -> None:
        self.add_bans(client, [ban])

    def add_bans(self, client: Any, bans: Iterable[Ban], now: float | None = None) -> None:
        """Write ``bans`` and bump the version, dropping ended bans on the way: one round
        trip, two when some had ended."""
        pipe = client.pipeline(transaction=False)
        self.stage_bans(pipe, bans, time.time() if now is None else now)
        self.drop_ended(client, pipe.execute()[0])

    def stage_bans(self, pipe: Any, bans: Iterable[Ban], now: float) -> None:
        """Queue ``bans`` on ``pipe``; its first reply lists the ended bans to drop."""
        pipe.zrangebyscore(self.bans_z, "-inf", now)
        for ban in bans:
            pipe.zadd(self.bans_z, {ban.member: ban.until})
            pipe.hset(self.bans_i, ban.member, json.dumps(asdict(ban), separators=(",", ":")))
            if ban.address:
                pipe.hset(self.bans_a, ban.member, ban.address)
        pipe.incr(self.version_key)

    def drop_ended(self, client: Any, ended: list[Any]) -> None:
        if ended:
            pipe = client.pipeline(transaction=False)
            pipe.zrem(self.bans_z, *ended)
            pipe.hdel(self.bans_i, *ended)
            pipe.hdel(self.bans_a, *ended)
            pipe.execute()

    def remove_ban(self, client: Any, rule: str, digest: str) -> bool:
        member = f"{rule}|{digest}"
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.bans_z, member)
        pipe.hdel(self.bans_i, member)
        pipe.hdel(self.bans_a, member)
        pipe.incr(self.version_key)
        removed, _, _, _ = pipe.execute()
        return bool(removed)

    def active_bans(self, client: Any, now: float) -> dict[str, dict[str, float]]:
        """rule -> digest -> until, for bans still running at ``now``."""
        out: dict[str, dict[str, float]] = {}
        for member, until in client.zrangebyscore(self.bans_z, f"({now}", "+inf", withscores=True):
            rule, _, digest = _text(member).rpartition("|")
            out.setdefault(rule, {})[digest] = float(until)
        return out

    def ban_addresses(self, client: Any) -> dict[tuple[str, str], str]:
        """(rule, digest) -> address or network, of the ``ip:`` bans given by address."""
        out: dict[tuple[str, str], str] = {}
        for member, address in client.hgetall(self.bans_a).items():
            rule, _, digest = _text(member).rpartition("|")
            out[(rule, digest)] = _text(address)
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
            address = str(data.get("address") or "")
            bans.append(Ban(rule, digest, str(identity), float(until), str(reason), address))
        return bans

    def expire_bans(self, client: Any, now: float) -> None:
        """Drop the bans ended at ``now`` (and bump the version if any was running)."""
        ended = client.zrangebyscore(self.bans_z, "-inf", now)
        self.drop_ended(client, ended)
        if ended and now > time.time():  # ended early: readers must hear of it
            client.incr(self.version_key)

    def fetch(self, client: Any, now: float) -> Fetched:
        """Everything a limiter holds of the fleet's bans and brownout, one round trip."""
        pipe = client.pipeline(transaction=False)
        pipe.get(self.version_key)
        pipe.zrangebyscore(self.bans_z, f"({now}", "+inf", withscores=True)
        pipe.hgetall(self.bans_a)
        pipe.get(self.brownout_key)
        version, running, addressed, raw = pipe.execute()
        active: dict[str, dict[str, float]] = {}
        for member, until in running:
            rule, _, digest = _text(member).rpartition("|")
            active.setdefault(rule, {})[digest] = float(until)
        addresses: dict[tuple[str, str], str] = {}
        for member, address in addressed.items():
            rule, _, digest = _text(member).rpartition("|")
            addresses[(rule, digest)] = _text(address)
        brownout = None if raw is None else Brownout.from_json(raw)
        return Fetched(int(version or 0), active, addresses, brownout)

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
        self.stage_rejections(pipe, counts, window_seconds)
        return self.totals(counts, pipe.execute())

    def stage_rejections(
        self, pipe: Any, counts: Mapping[tuple[str, str], int], window_seconds: Mapping[str, float]
    ) -> None:
        """Queue the counts on ``pipe``: two replies per pair, for :meth:`totals`."""
        for (rule, digest), n in counts.items():
            key = self.penalty_key(rule, digest)
            # The window starts with the first rejection and its key expires with it.
            pipe.set(key, 0, ex=max(1, math.ceil(window_seconds[rule])), nx=True)
            pipe.incrby(key, n)

    @staticmethod
    def totals(
        counts: Mapping[tuple[str, str], int], replies: list[Any]
    ) -> dict[tuple[str, str], int]:
        return {pair: int(replies[2 * i + 1]) for i, pair in enumerate(counts)}

    # -- brownout --------------------------------------------------------------

    def set_brownout(self, client: Any, brownout: Brownout, now: float) -> None:
        ttl_ms = max(1, math.ceil((brownout.until - now) * 1000))
        pipe = client.pipeline(transaction=False)
        pipe.set(self.brownout_key, brownout.to_json(), px=ttl_ms)
        pipe.incr(self.version_key)
        pipe.execute()

    def clear_brownout(self, client: Any) -> bool:
        pipe = client.pipeline(transaction=False)
        pipe.delete(self.brownout_key)
        pipe.incr(self.version_key)
        return bool(pipe.execute()[0])

    def brownout(self, client: Any) -> Brownout | None:
        raw = client.get(self.brownout_key)
        return None if raw is None else Brownout.from_json(raw)

    # -- top offenders ---------------------------------------------------------

    def top_key(self, rule: str, minute: int) -> str:
        return f"{self.prefix}{{top}}:{safe_name(rule)}:{minute}"

    def push_top(
        self, client: Any, rule: str, deltas: Iterable[tuple[str, int]], now: float
    ) -> None:
        self.push_tops(client, [(rule, list(deltas), True)], now)

    def push_tops(self, client: Any, pushes: list[TopPush], now: float) -> None:
        """Add offenders of several rules to the current minute: one command."""
        command = self.top_command(pushes, now, loaded=False)
        try:
            client.execute_command(*command)
        except Exception as exc:
            self.retry_top(client, command, exc)

    def top_command(self, pushes: list[TopPush], now: float, *, loaded: bool) -> list[Any]:
        """The command of one push: ``EVALSHA`` once the script is ``loaded`` (this
        process sent it), else ``EVAL`` (which loads it); :meth:`retry_top` on NOSCRIPT."""
        minute = int(now // 60)
        keys: list[str] = [self.rules_key]
        args: list[Any] = [TOP_TTL_SECONDS]
        for rule, deltas, touch in pushes:
            keys.append(self.top_key(rule, minute))
            args += [rule, int(touch), len(deltas)]
            for identity, n in deltas:
                args += [identity, n]
        if loaded:
            return ["EVALSHA", TOP_PUSH_SHA, len(keys), *keys, *args]
        return ["EVAL", TOP_PUSH_LUA, len(keys), *keys, *args]

    @staticmethod
    def retry_top(client: Any, command: list[Any], error: BaseException) -> None:
        """After a ``NOSCRIPT`` (Redis restarted or flushed): send it with ``EVAL``."""
        from redis.exceptions import NoScriptError

        if not isinstance(error, NoScriptError):
            raise error
        client.execute_command("EVAL", TOP_PUSH_LUA, *command[2:])

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


@dataclass(frozen=True, slots=True)
class Fetched:
    """The fleet's bans and brownout as one fetch found them (:meth:`Layout.fetch`)."""

    version: int
    active: dict[str, dict[str, float]]  # rule -> digest -> until
    addressed: dict[tuple[str, str], str]  # (rule, digest) -> address of an ``ip:`` ban
    brownout: Brownout | None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
