"""What operators impose on traffic: a ban of one identity from one rule, a brownout.

Both are plain values, held in memory by each limiter's operations and in Redis by
:class:`ratemw.ops.shared.Layout`; :func:`ip_ban` gives the digest an ``ip:`` ban is
keyed by, the one a limiter computes for a request from that address.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

from ratemw.addresses import ban_network, shown_network
from ratemw.store._keys import identity_digest

__all__ = ["Ban", "Brownout", "ip_ban"]


@dataclass(frozen=True, slots=True)
class Ban:
    """One identity banned from one rule until ``until`` (epoch seconds)."""

    rule: str
    digest: str
    identity: str  # what operators see: the address, or ``h:`` and the digest
    until: float
    reason: str = ""
    #: an ``ip:`` ban's canonical address or network (``ratemw.addresses``), else ""
    address: str = ""

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


def ip_ban(text: str, key: bytes) -> tuple[str, str]:
    """(digest, canonical address or network) of the ``ip:`` ban of ``text``.

    The digest is the one a limiter computes for that text as an ``ip`` identity key
    (an IPv4 address, an IPv6 address at ``ipv6_prefix: 128``, an IPv6 group as ``top``
    shows it); limiters grouping otherwise map the address itself (``{bans}:a``).
    Raises ``ValueError`` for what cannot name clients
    (:func:`ratemw.addresses.ban_network`).
    """
    shown = shown_network(ban_network(text))
    return identity_digest(shown, key), shown
