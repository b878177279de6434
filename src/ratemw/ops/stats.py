"""Plain per-process counters of every decision, and the snapshot exporters read.

The hot path only adds to integer slots of a :class:`RuleStats` (the fast path under the
policy lock it already holds; elsewhere an ``x.n += 1`` on a slot, which has no point
where CPython's GIL changes hands); exporters (``ratemw.metrics`` for Prometheus) read
them at scrape time through :class:`MetricsSnapshot`. No identity is ever a label: a rule is named
by its name, the route it matches and the tier.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

__all__ = [
    "DECISION_BUCKETS",
    "STORE_BUCKETS",
    "VERDICTS",
    "Histogram",
    "HistogramData",
    "MetricsSnapshot",
    "RuleStats",
    "StatsRegistry",
]

#: seconds: decisions take microseconds; the last buckets catch a store call
DECISION_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2, 0.1)
#: seconds: one Redis round trip on a LAN, up to the 50 ms command timeout and beyond
STORE_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.5)

#: ``verdict`` label values, each with the ``RuleStats`` slot it is read from, by mode
VERDICTS: tuple[tuple[str, str, str], ...] = (
    ("allowed", "enforce", "allowed"),
    ("rejected", "enforce", "rejected"),
    ("challenged", "enforce", "challenged"),
    ("banned", "enforce", "banned"),
    ("brownout", "enforce", "brownout"),
    ("error", "enforce", "errors"),
    ("allowed", "shadow", "shadow_allowed"),
    ("rejected", "shadow", "shadow_rejected"),
)


class RuleStats:
    """Counters of one (rule, route, tier): what the hot path adds to."""

    __slots__ = (
        "allowed", "banned", "brownout", "challenges", "drained_challenged", "drained_rejected",
        "errors", "labels", "near", "queue", "shadow_allowed", "shadow_rejected",
    )  # fmt: skip

    def __init__(self, rule: str, route: str, tier: str) -> None:
        self.labels = (rule, route, tier)
        #: identities rejected (challenged) since the operations loop last looked: the list
        #: is the count too, so a rejection costs one append. The loop takes the whole
        #: list and leaves a fresh one (one swap, atomic under the GIL).
        self.queue: list[Hashable] = []
        self.challenges: list[Hashable] = []
        self.drained_rejected = 0
        self.drained_challenged = 0
        self.allowed = 0
        self.banned = 0
        self.brownout = 0
        self.errors = 0  # 503: store unavailable under on_store_error: closed
        self.shadow_allowed = 0
        self.shadow_rejected = 0
        self.near = 0  # admitted with at most 20 % of the quota left

    @property
    def rejected(self) -> int:
        return self.drained_rejected + len(self.queue)

    @property
    def challenged(self) -> int:
        return self.drained_challenged + len(self.challenges)

    def take_queues(self) -> tuple[list[Hashable], list[Hashable]]:
        """(rejected, challenged) identities since the last call; hold the registry's lock
        so that a reader never sees a list taken but not yet counted."""
        rejected, self.queue = self.queue, []
        challenged, self.challenges = self.challenges, []
        self.drained_rejected += len(rejected)
        self.drained_challenged += len(challenged)
        return rejected, challenged


@dataclass(frozen=True, slots=True)
class HistogramData:
    """Non-cumulative bucket counts (the last is +Inf), their sum and count."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class Histogram:
    """A fixed-bucket histogram, safe to observe from many threads."""

    __slots__ = ("_counts", "_lock", "_sum", "bounds")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def renew_lock(self) -> None:
        self._lock = threading.Lock()

    def data(self) -> HistogramData:
        with self._lock:
            return HistogramData(self.bounds, tuple(self._counts), self._sum)


class StatsRegistry:
    """Every :class:`RuleStats` of one limiter, kept across rule reloads so counters
    never go down; plus the limiter-wide histogram of sampled decision times."""

    def __init__(self) -> None:
        self._stats: dict[tuple[str, str, str], RuleStats] = {}
        #: guards the registry, and each RuleStats' queues against a torn read
        self.lock = threading.Lock()
        self.decision_seconds = Histogram(DECISION_BUCKETS)
        self.config_reloads: dict[str, int] = {"ok": 0, "error": 0}

    def get(self, rule: str, route: str, tier: str) -> RuleStats:
        labels = (rule, route, tier)
        found = self._stats.get(labels)
        if found is None:
            with self.lock:
                found = self._stats.setdefault(labels, RuleStats(rule, route, tier))
        return found

    def all(self) -> list[RuleStats]:
        with self.lock:
            return list(self._stats.values())

    def renew_locks(self) -> None:
        """After fork: locks another thread held at fork time would never be released."""
        self.lock = threading.Lock()
        self.decision_seconds.renew_lock()

    def count_reload(self, ok: bool) -> None:
        with self.lock:
            self.config_reloads["ok" if ok else "error"] += 1


@dataclass(frozen=True, slots=True)
class MetricsSnapshot:
    """Everything the exporters publish, read at one moment (see docs/operations.md).

    Label tuples: ``decisions`` (rule, route, tier, verdict, mode); ``near_limit``
    (rule, route, tier); ``inflight`` / ``keys`` / ``spike_alerts`` / ``bans`` (rule,);
    ``breaker_state`` (node,), 0 closed, 1 half-open, 2 open; ``config_reloads``
    (result,), ``ok`` or ``error``.
    """

    decisions: dict[tuple[str, str, str, str, str], int] = field(default_factory=dict)
    near_limit: dict[tuple[str, str, str], int] = field(default_factory=dict)
    decision_seconds: HistogramData = HistogramData(
        DECISION_BUCKETS, (0,) * (len(DECISION_BUCKETS) + 1), 0.0
    )
    store_errors: int = 0
    store_latency: HistogramData = HistogramData(
        STORE_BUCKETS, (0,) * (len(STORE_BUCKETS) + 1), 0.0
    )
    lease_calls: int = 0
    breaker_state: dict[tuple[str], int] = field(default_factory=dict)
    inflight: dict[tuple[str], int] = field(default_factory=dict)
    config_reloads: dict[tuple[str], int] = field(default_factory=dict)
    keys: dict[tuple[str], int] = field(default_factory=dict)
    spike_alerts: dict[tuple[str], int] = field(default_factory=dict)
    bans: dict[tuple[str], int] = field(default_factory=dict)
    banned: int = 0
    brownout_factor: float = 1.0
