"""The ban table a rule reads on the hot path, and what an address ban means to it.

``RuleOps.bans`` maps identity digests to the end of their ban and is replaced whole,
never mutated, so the decision paths read it without a lock. An ``ip:`` ban names an
address or network (``ratemw.addresses``); a limiter maps it to the digest of the
identity key a request from it has (its resolver's grouping), or, for a network wider
than one key, keeps it in ``RuleOps.wide`` and marks the table with :data:`WIDE` so
that the hot path's "any bans?" test still holds.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from ratemw.addresses import IPNetwork, key_network

if TYPE_CHECKING:
    from ratemw.ops.measures import Ban
    from ratemw.ops.rule_ops import RuleOps
    from ratemw.ops.shared import Fetched

__all__ = ["WIDE", "Wide", "apply_fleet", "bounded", "install", "wide_until"]

log = logging.getLogger("ratemw")

#: in ``RuleOps.bans`` while a network ban covers several keys (never a digest: 32 hex)
WIDE = "*"
Wide = list[tuple[IPNetwork, float]]  # (network, end of its ban)


def install(rops: RuleOps, bans: dict[str, float], wide: Wide) -> None:
    """Replace ``rops``' ban table (``bans`` is taken over, not copied)."""
    bans.pop(WIDE, None)
    if wide:
        bans[WIDE] = max(u for _, u in wide)
    rops.wide = tuple(wide)  # before bans: a reader that sees WIDE finds them
    rops.bans = bans


def count(rops: RuleOps) -> int:
    """Bans held for ``rops``: digests and networks."""
    return len(rops.bans) - (WIDE in rops.bans) + len(rops.wide)


def bounded(rule: str, bans: dict[str, float], bound: int) -> dict[str, float]:
    """``bans`` itself, or past ``bound`` entries the ``bound`` ending last."""
    if len(bans) <= bound:
        return bans
    log.warning(
        "ratemw: %d bans of rule %s in force, more than max_identities=%d: the %d "
        "ending last are honoured in this process", len(bans), rule, bound, bound,
    )  # fmt: skip
    return dict(sorted(bans.items(), key=lambda item: item[1])[-bound:])


def wide_until(rops: RuleOps, key: Hashable) -> float | None:
    """The latest end of the network bans covering ``key`` (an ``ip`` identity key: an
    address or a group; or, for other rules, the ``("ip", address)`` fallback)."""
    if rops.ip:
        text = key if isinstance(key, str) else None
    elif isinstance(key, tuple) and len(key) == 2 and key[0] == "ip":
        text = key[1] if isinstance(key[1], str) else None
    else:
        text = None
    net = key_network(text) if text else None
    if net is None:
        return None
    found = None
    for wide, until in rops.wide:
        if net.version == wide.version and net.subnet_of(wide):  # type: ignore[arg-type]
            found = until if found is None else max(found, until)
    return found


class FleetHost(Protocol):
    """What :func:`apply_fleet` needs of the limiter's operations (``Operations``)."""

    rules: dict[str, RuleOps]
    max_identities: int
    _addressed: dict[tuple[str, str], tuple[str, float]]
    _unsent: list[Ban]

    def _mapped(self, rops: RuleOps, address: str) -> tuple[str | None, IPNetwork | None]: ...


def apply_fleet(ops: FleetHost, fetched: Fetched) -> None:
    """Hold the fleet's running bans as ``fetched`` found them (with this process's own
    not yet sent), address bans mapped to this limiter's identity keys."""
    active = fetched.active
    addressed = dict(fetched.addressed)
    unsent = list(ops._unsent)
    pending = {(b.rule, b.digest): b.until for b in unsent}
    addressed.update({(b.rule, b.digest): b.address for b in unsent if b.address})
    for name, rops in ops.rules.items():
        fresh = dict(active.get(name, {}))
        for (rule, digest), until in pending.items():
            if rule == name:
                fresh[digest] = until
        wide: Wide = []
        for (rule, digest), address in addressed.items():
            end = fresh.get(digest) if rule == name else None
            if end is None:
                continue
            mapped, net = ops._mapped(rops, address)
            if mapped is not None:
                fresh[mapped] = max(end, fresh.get(mapped, 0.0))
            elif net is not None:
                wide.append((net, end))
        fresh = bounded(name, fresh, ops.max_identities)
        if fresh != rops.bans or tuple(wide) != rops.wide:
            install(rops, fresh, wide)
    kept: dict[tuple[str, str], tuple[str, float]] = {}
    for pair, address in addressed.items():
        end = active.get(pair[0], {}).get(pair[1], pending.get(pair))
        if end is not None:
            kept[pair] = (address, end)
    ops._addressed = kept
