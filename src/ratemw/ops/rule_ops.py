"""``RuleOps``: what operations keep per rule name, across reloads.

The hot path reads ``bans`` and ``wide`` lock-free and calls back into its owner (the
limiter's :class:`~ratemw.ops.runtime.Operations`) only while a ban is in force; the
owner is typed by what this module needs of it, so that the ban tables
(:mod:`ratemw.ops.bans`) and the runtime both build on this module and not on each other.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TYPE_CHECKING, Protocol

from ratemw.addresses import IPNetwork
from ratemw.decision import Outcome
from ratemw.ops.topk import SpaceSaving

if TYPE_CHECKING:
    from ratemw.ops.config import OpsConfig
    from ratemw.rules.model import Penalty

__all__ = ["RuleOps", "RuleOwner"]


class RuleOwner(Protocol):
    """What a rule's operations state needs of the operations that own it."""

    config: OpsConfig

    def banned(self, rops: RuleOps, key: Hashable) -> float:
        """Seconds left of ``key``'s ban through this rule, 0.0 when none."""
        ...


class RuleOps:
    """What operations keep per rule name, across reloads."""

    __slots__ = (
        "banned_outcome", "bans", "ip", "name", "owner", "penalty", "pending", "top", "wide",
    )  # fmt: skip

    def __init__(self, name: str, owner: RuleOwner) -> None:
        self.name = name
        self.owner = owner
        self.banned_outcome = Outcome((name,), (), None, "ban")
        self.ip = False  # identity "ip": offenders are shown as addresses
        #: digest -> end of the ban (epoch s); read lock-free on the hot path, so it is
        #: only ever replaced whole, never mutated
        self.bans: dict[str, float] = {}
        #: (network, end) of bans wider than one identity key; replaced whole too
        self.wide: tuple[tuple[IPNetwork, float], ...] = ()
        self.penalty: Penalty | None = None
        self.pending = SpaceSaving(owner.config.top_k)  # this interval's, for Redis
        self.top = SpaceSaving(owner.config.top_k)  # since start, for this process's view
