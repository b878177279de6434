"""The bans one limiter holds: imposing, lifting and ending them, and those not yet sent.

A ban replaces its rule's table (:mod:`ratemw.ops.bans`) whole, so the hot path reads
it lock-free. An ``ip:`` ban given by address is mapped to the identity key a request
from that address has here (this limiter's resolver and ``ipv6_prefix``), or kept as a
network when it spans several keys. Per-identity state is bounded by ``max_identities``:
past it a ban still goes to Redis (and other processes) without being held here, and
of the bans not yet sent the newest are kept.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from ratemw.addresses import IPNetwork, parse_network
from ratemw.identity.resolver import UNKNOWN_ADDRESS
from ratemw.ops import bans
from ratemw.ops.measures import Ban, ip_ban

if TYPE_CHECKING:
    from ratemw.identity.resolver import IdentityResolver
    from ratemw.ops.rule_ops import RuleOps

__all__ = ["LocalBans"]

events = logging.getLogger("ratemw.events")
_Pair = tuple[str, str]  # (rule, identity digest)


class LocalBans:
    """The bans of one limiter's rules (``rules``, shared with its operations).

    ``digest`` and ``shown`` name an identity key as the operations do; ``resolver``
    returns the limiter's current resolver (``None`` before rules are installed).
    """

    def __init__(
        self,
        rules: dict[str, RuleOps],
        max_identities: int,
        *,
        key: bytes,
        digest: Callable[[Hashable], str],
        shown: Callable[[RuleOps, Hashable], str],
        resolver: Callable[[], IdentityResolver | None],
        wall: Callable[[], float],
    ) -> None:
        self.rules = rules
        self.max_identities = max_identities
        self.started: Counter[str] = Counter()  # bans imposed per rule, for metrics
        self.lock = threading.Lock()  # guards the unsent list against the loop
        #: bans given by address -> (the address, the ban's end), for lift()
        self._addressed: dict[_Pair, tuple[str, float]] = {}
        self._unsent: list[Ban] = []
        self._key = key
        self._digest = digest
        self._shown = shown
        self._resolver = resolver
        self._wall = wall

    def banned(self, rops: RuleOps, key: Hashable) -> float:
        """Seconds left of ``key``'s ban from this rule (0.0 when not banned)."""
        table = rops.bans
        until = table.get(self._digest(key))
        if until is None:
            if bans.WIDE not in table:
                return 0.0
            until = bans.wide_until(rops, key)
            if until is None:
                return 0.0
        left = until - self._wall()
        return left if left > 0 else 0.0

    def ban(self, rule: str, identity: Hashable, seconds: float, reason: str) -> Ban:
        """Ban ``identity`` from ``rule`` (see ``Operations.ban``)."""
        rops = self.rules.get(rule)
        if rops is None:
            raise KeyError(f"no rule named {rule!r}")
        if rops.ip and isinstance(identity, str) and identity != UNKNOWN_ADDRESS:
            digest, shown = ip_ban(identity, self._key)
            return self.impose(rops, digest, shown, seconds, reason, address=shown)
        digest, shown = self._digest(identity), self._shown(rops, identity)
        return self.impose(rops, digest, shown, seconds, reason)

    def impose(
        self, rops: RuleOps, digest: str, shown: str, seconds: float, reason: str,
        address: str = "",
    ) -> Ban:  # fmt: skip
        """Hold the ban of ``digest`` from ``rops`` here and queue it for Redis."""
        ban = Ban(rops.name, digest, shown, self._wall() + seconds, reason, address)
        mapped, net = self._mapped(rops, address) if address else (digest, None)
        if net is not None:
            bans.install(rops, dict(rops.bans), [*rops.wide, (net, ban.until)])
        elif mapped is not None and (
            mapped in rops.bans or len(rops.bans) < self.max_identities
        ):  # past the bound the ban still reaches Redis, and other processes
            rops.bans = {**rops.bans, mapped: ban.until}
        if address:
            self._addressed[(rops.name, digest)] = (address, ban.until)
            if len(self._addressed) > self.max_identities:
                del self._addressed[next(iter(self._addressed))]
        self.started[rops.name] += 1
        with self.lock:
            self._unsent.append(ban)
            if len(self._unsent) > self.max_identities:  # Redis down for long: newest kept
                del self._unsent[: len(self._unsent) - self.max_identities]
        events.warning(
            "ratemw banned rule=%s identity=%s seconds=%.0f reason=%s",
            rops.name, shown, seconds, reason,
            extra={"ratemw": {"event": "ratemw.ban", "rule": rops.name, "identity": shown,
                              "seconds": seconds, "reason": reason}},
        )  # fmt: skip
        return ban

    def lift(self, rule: str, digest: str) -> None:
        """End the ban ``digest`` (as :class:`Ban` has it) from ``rule`` in this process."""
        rops = self.rules.get(rule)
        if rops is None:
            return
        gone = {digest}
        wide = list(rops.wide)
        found = self._addressed.pop((rule, digest), None)
        if found is not None:
            address = found[0]
            mapped, net = self._mapped(rops, address)
            gone.add(mapped or "")
            wide = [(n, u) for n, u in wide if n != net]
        kept = {d: u for d, u in rops.bans.items() if d not in gone}
        bans.install(rops, kept, wide)

    def _mapped(self, rops: RuleOps, address: str) -> tuple[str | None, IPNetwork | None]:
        """What an address ban means to this limiter: the digest of the identity key a
        request from it has (``ip`` rules; else the key it falls back to), or the
        network when it spans several keys."""
        resolver = self._resolver()
        try:
            net = parse_network(address, strict=False)
        except ValueError:
            return None, None
        if resolver is None:
            return None, net
        key = resolver.key_of_network(net)
        if key is None:
            return None, net
        return self._digest(key if rops.ip else ("ip", key)), None

    def unsent(self) -> list[Ban]:
        """The bans imposed here and not yet written to Redis (a copy)."""
        with self.lock:
            return list(self._unsent)

    def sent(self, done: list[Ban]) -> None:
        """``done`` reached Redis: forget them (bans imposed since stay queued)."""
        with self.lock:
            self._unsent = [b for b in self._unsent if b not in done]

    def all_sent(self) -> bool:
        return not self._unsent

    def expire(self, wall: float, *, shared: bool) -> None:
        """Drop the bans ended at ``wall``; without Redis (not ``shared``) nothing
        waits to be sent."""
        for rops in list(self.rules.values()):
            if any(u <= wall for u in rops.bans.values()):
                kept = {d: u for d, u in rops.bans.items() if u > wall}
                bans.install(rops, kept, [(n, u) for n, u in rops.wide if u > wall])
        if not shared:
            self._unsent.clear()
        self._addressed = {p: (a, u) for p, (a, u) in self._addressed.items() if u > wall}

    def tracked(self) -> dict[str, int]:
        """Entries held: bans (digests and networks), address bans, unsent bans."""
        return {
            "bans": sum(bans.count(r) for r in self.rules.values()),
            "addressed": len(self._addressed),
            "unsent": len(self._unsent),
        }
