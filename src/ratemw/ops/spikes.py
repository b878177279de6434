"""Per-rule spike detection on rejections per second, against a moving baseline.

A background loop feeds each rule's cumulative rejection counter to
:meth:`SpikeDetector.observe` every second or so. The rate since the previous
observation is compared with the rule's baseline, a time-weighted EWMA of past rates;
the baseline absorbs the new rate only after the comparison, so a spike lifts it
gradually. No I/O, no threads: times are passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SpikeAlert", "SpikeConfig", "SpikeDetector"]


@dataclass(frozen=True, slots=True)
class SpikeConfig:
    """When a rule's rejection rate counts as a spike.

    Fire when the rate exceeds ``multiple`` times the baseline and ``floor_per_second``,
    the baseline covers at least ``warmup_seconds`` of history, and the rule's previous
    alert is at least ``cooldown_seconds`` old. ``half_life_seconds`` is how long a
    past rate takes to lose half its weight in the baseline. Raises ``ValueError`` for
    a non-finite or out-of-range value.
    """

    multiple: float = 5.0
    floor_per_second: float = 10.0
    half_life_seconds: float = 300.0
    cooldown_seconds: float = 300.0
    warmup_seconds: float = 60.0

    def __post_init__(self) -> None:
        for name in ("multiple", "half_life_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be positive and finite, not {value!r}")
        for name in ("floor_per_second", "cooldown_seconds", "warmup_seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be non-negative and finite, not {value!r}")


@dataclass(frozen=True, slots=True)
class SpikeAlert:
    """One spike: ``multiple`` is the observed ``rate / baseline`` (inf if baseline is 0).

    ``at`` is the monotonic ``now`` given to ``observe``, for ordering only.
    """

    rule: str
    rate_per_second: float
    baseline_per_second: float
    multiple: float
    at: float

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly fields for logs and webhooks (an infinite multiple is ``None``)."""
        return {
            "event": "ratemw.spike",
            "rule": self.rule,
            "rate_per_second": round(self.rate_per_second, 3),
            "baseline_per_second": round(self.baseline_per_second, 3),
            # strict JSON has no Infinity
            "multiple": round(self.multiple, 3) if math.isfinite(self.multiple) else None,
        }


class _RuleState:
    __slots__ = ("first_at", "last_alert_at", "last_at", "last_total", "weight", "weighted")

    def __init__(self, total: int, now: float) -> None:
        self.first_at = now
        self.last_at = now
        self.last_total = total
        self.weighted = 0.0  # EWMA of rates, started from 0 ...
        self.weight = 0.0  # ... and the weight it has accumulated, for bias correction
        self.last_alert_at: float | None = None


class SpikeDetector:
    """Tracks each rule's rejection rate and baseline; ``observe`` returns alerts.

    The baseline is a bias-corrected EWMA (as in Adam): the plain EWMA started from 0
    divided by the weight it has gathered, ``1 - 0.5 ** (history / half_life)``. So
    during the first minutes it is the time-weighted mean of the rates seen, rather
    than dragged towards 0 (which would make steady load look like a spike) or pinned
    to the first sample.

    A baseline of 0 (the rule has rejected nothing so far) is used as is: after the
    warm-up any rate above ``floor_per_second`` is a spike (with an infinite multiple),
    which is the case worth hearing about, a rule that suddenly starts rejecting.

    Not thread-safe: one background loop calls ``observe``.
    """

    __slots__ = ("_rules", "config")

    def __init__(self, config: SpikeConfig = SpikeConfig()) -> None:
        self.config = config
        self._rules: dict[str, _RuleState] = {}

    def observe(self, rule: str, total_rejections: int, now: float) -> SpikeAlert | None:
        """Record ``rule``'s cumulative rejections at monotonic ``now`` (seconds).

        Returns an alert if the rate since the previous observation is a spike. The
        first observation of a rule only records; one at or before the previous time
        is ignored. A counter that went down was reset (a new process, a reloaded
        rule): its value is taken as the rejections since the previous observation.
        """
        state = self._rules.get(rule)
        if state is None:
            self._rules[rule] = _RuleState(total_rejections, now)
            return None
        dt = now - state.last_at
        if not dt > 0:
            return None
        delta = total_rejections - state.last_total
        if delta < 0:
            delta = total_rejections  # as Prometheus rate(): the counter restarted at 0
        rate = delta / dt
        config = self.config

        alert = None
        history = state.last_at - state.first_at  # the span the baseline has absorbed
        if (
            state.weight > 0
            and history >= config.warmup_seconds
            and rate > config.floor_per_second
            and (
                state.last_alert_at is None or now - state.last_alert_at >= config.cooldown_seconds
            )
        ):
            baseline = state.weighted / state.weight
            if rate > config.multiple * baseline:
                multiple = rate / baseline if baseline > 0 else math.inf
                alert = SpikeAlert(rule, rate, baseline, multiple, now)
                state.last_alert_at = now

        # Only now does the baseline learn the new rate.
        alpha = 1.0 - 0.5 ** (dt / config.half_life_seconds)
        state.weighted += alpha * (rate - state.weighted)
        state.weight += alpha * (1.0 - state.weight)
        state.last_at = now
        state.last_total = total_rejections
        return alert

    def baseline(self, rule: str) -> float | None:
        """``rule``'s current baseline (rejections per second), ``None`` before a rate."""
        state = self._rules.get(rule)
        if state is None or state.weight == 0:
            return None
        return state.weighted / state.weight

    def forget(self, rule: str) -> None:
        """Drop ``rule``'s history (it was removed); its next observation only records."""
        self._rules.pop(rule, None)
