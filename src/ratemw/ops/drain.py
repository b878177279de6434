"""Each pass, the hot path's queues become top offenders, log lines and penalty bans.

The hot path only queues the identities it rejected or challenged (``RuleStats``). A
pass takes the queues (the newest ``queue_limit`` of a flood suffice), adds them to each
rule's top-offender sketches, writes the sampled rejection log and, for rules with a
penalty, counts them in local windows (:class:`~ratemw.ops.penalty.PenaltyWindows`)
and in the fleet's counts (returned for Redis); a count that reaches the penalty's rate
bans the identity (docs/operations.md, "The penalty box").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from functools import partial
from typing import TYPE_CHECKING

from ratemw.ops.penalty import PenaltyWindows

if TYPE_CHECKING:
    from ratemw.ops.config import OpsConfig
    from ratemw.ops.events import RejectionLog
    from ratemw.ops.local_bans import LocalBans
    from ratemw.ops.rule_ops import RuleOps
    from ratemw.ops.stats import StatsRegistry

__all__ = ["Drain", "Pair"]

Pair = tuple[str, str]  # (rule, identity digest)


class Drain:
    """Drains one limiter's queues into its rules' state (``rules``, shared)."""

    def __init__(
        self,
        config: OpsConfig,
        stats: StatsRegistry,
        rules: dict[str, RuleOps],
        local_bans: LocalBans,
        rejections: RejectionLog,
        *,
        digest: Callable[[Hashable], str],
        shown: Callable[[RuleOps, Hashable], str],
    ) -> None:
        self.config = config
        self.stats = stats
        self.rules = rules
        self.local_bans = local_bans
        self.rejections = rejections
        self.windows = PenaltyWindows(local_bans.max_identities)  # local windows
        self._digest = digest
        self._shown = shown

    def periods(self) -> dict[str, float]:
        """rule -> its penalty's period, for the rules with a penalty."""
        return {
            rule: rops.penalty.after.period_seconds
            for rule, rops in self.rules.items()
            if rops.penalty is not None
        }

    def prune(self, wall: float) -> None:
        """Drop the penalty windows that have passed at ``wall``."""
        self.windows.prune(wall, self.periods())

    def drain(self, wall: float) -> tuple[dict[Pair, int], dict[Pair, str]]:
        """Queues -> sketches, local penalties and the log; returns this pass's
        rejections per (rule, digest) of rules with a penalty, and how each is shown."""
        penalised: dict[Pair, int] = {}
        shown_as: dict[Pair, str] = {}
        for stats in self.stats.all():
            if not (stats.queue or stats.challenges):
                continue
            with self.stats.lock:  # so that a scrape never sees a list taken, not counted
                rejected, challenged = stats.take_queues()
            rule = stats.labels[0]
            rops = self.rules.get(rule)
            if rops is None:
                continue
            for items, verdict in ((rejected, "rejected"), (challenged, "challenged")):
                if not items:
                    continue
                if len(items) > self.config.queue_limit:
                    # A flood: the newest suffice for the sketch, penalties and the log.
                    items = items[-self.config.queue_limit :]
                for key, n in Counter(items).items():
                    shown = self._shown(rops, key)
                    rops.top.add(shown, n)
                    rops.pending.add(shown, n)
                    if rops.penalty is not None:
                        digest = self._digest(key)
                        penalised[(rule, digest)] = penalised.get((rule, digest), 0) + n
                        shown_as[(rule, digest)] = shown
                        self._count_locally(rops, digest, shown, n, wall)
                self.rejections.log(stats.labels, verdict, items, partial(self._shown, rops))
        return penalised, shown_as

    def _count_locally(self, rops: RuleOps, digest: str, shown: str, n: int, wall: float) -> None:
        penalty = rops.penalty
        assert penalty is not None
        count = self.windows.add(rops.name, penalty.after.period_seconds, digest, n, wall)
        if count >= penalty.after.count and digest not in rops.bans:
            self.windows.drop(rops.name, digest)
            self.local_bans.impose(
                rops, digest, shown, penalty.ban_seconds, f"penalty {penalty.after}"
            )

    def ban_by_fleet(self, totals: Mapping[Pair, int], shown: Mapping[Pair, str]) -> None:
        """Ban the identities whose fleet-wide count (``totals``) reached the penalty."""
        for (rule, digest), total in totals.items():
            rops = self.rules[rule]
            assert rops.penalty is not None
            if total >= rops.penalty.after.count and digest not in rops.bans:
                self.local_bans.impose(rops, digest, shown[(rule, digest)],
                                       rops.penalty.ban_seconds,
                                       f"penalty {rops.penalty.after} (fleet)")  # fmt: skip
