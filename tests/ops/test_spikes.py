"""SpikeDetector on scripted times: steady load, spikes, cool-down, floor, warm-up, resets."""

from __future__ import annotations

import json
import math
import random

import pytest

from ratemw.ops.spikes import SpikeAlert, SpikeConfig, SpikeDetector


class Feed:
    """One rule's cumulative counter, observed every 0.5-1 s with seeded jitter."""

    def __init__(self, detector: SpikeDetector, rule: str = "login", seed: int = 0) -> None:
        self.detector = detector
        self.rule = rule
        self.rng = random.Random(seed)
        self.now = 1_000.0
        self.total = 0
        self.alerts: list[SpikeAlert] = []
        detector.observe(rule, self.total, self.now)

    def run(self, seconds: float, rate: float, jitter: float = 0.1) -> list[SpikeAlert]:
        """Reject at ``rate`` per second (+-``jitter``) for ``seconds``; return new alerts."""
        new: list[SpikeAlert] = []
        end = self.now + seconds
        while self.now < end:
            tick = self.rng.uniform(0.5, 1.0)
            self.now += tick
            self.total += round(rate * tick * self.rng.uniform(1 - jitter, 1 + jitter))
            alert = self.detector.observe(self.rule, self.total, self.now)
            if alert is not None:
                new.append(alert)
        self.alerts.extend(new)
        return new


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_load_never_fires(seed: int) -> None:
    detector = SpikeDetector()
    feed = Feed(detector, seed=seed)
    assert feed.run(20 * 60, 50.0, jitter=0.3) == []
    baseline = detector.baseline("login")
    assert baseline is not None and 45 < baseline < 55


def test_jump_to_20x_fires_once_within_the_cooldown() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    spike_start = feed.now
    alerts = feed.run(290, 1_000.0)  # shorter than the 300 s cool-down
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule == "login"
    assert spike_start < alert.at <= spike_start + 1.0  # the first spiking tick
    assert 850 < alert.rate_per_second < 1_150
    assert 45 < alert.baseline_per_second < 55
    assert alert.multiple == pytest.approx(alert.rate_per_second / alert.baseline_per_second)


def test_sustained_plateau_becomes_the_new_normal() -> None:
    # The baseline learns every rate, so at 20x it passes rate / 5 within ~75 s of a
    # 300 s half-life: after the cool-down the plateau no longer counts as a spike.
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    assert len(feed.run(20 * 60, 1_000.0)) == 1
    baseline = detector.baseline("login")
    assert baseline is not None and baseline > 800


def test_fires_again_after_the_cooldown_while_still_spiking() -> None:
    detector = SpikeDetector(SpikeConfig(cooldown_seconds=30.0))
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    alerts = feed.run(45, 1_000.0)
    assert len(alerts) == 2
    first, second = alerts
    assert 30 <= second.at - first.at <= 31
    # the spike lifts the baseline only gradually
    assert 45 < first.baseline_per_second < second.baseline_per_second < 1_000 / 5


def test_rate_below_the_floor_never_fires() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 0.5, jitter=0)
    assert feed.run(5 * 60, 8.0, jitter=0) == []  # 16x, but under 10/s


def test_zero_baseline_fires_above_the_floor_only() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(5 * 60, 0.0)
    assert detector.baseline("login") == 0.0
    assert feed.run(30, 9.0, jitter=0) == []
    quiet = SpikeDetector()
    feed = Feed(quiet)
    feed.run(5 * 60, 0.0)
    [alert] = feed.run(30, 50.0)
    assert alert.baseline_per_second == 0.0
    assert alert.multiple == math.inf
    assert alert.as_dict()["multiple"] is None


def test_warmup_is_respected() -> None:
    def spike_after(quiet_seconds: float) -> list[SpikeAlert]:
        detector = SpikeDetector(SpikeConfig(warmup_seconds=60.0))
        detector.observe("r", 0, 0.0)
        for t in range(1, int(quiet_seconds) + 1):
            detector.observe("r", 0, float(t))
        alert = detector.observe("r", 1_000, quiet_seconds + 1)
        return [alert] if alert is not None else []

    # The baseline covers [0, 59] at the spiking tick: too short.
    assert spike_after(59) == []
    assert len(spike_after(60)) == 1


def test_warmup_gates_a_spike_from_the_start() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    assert feed.run(50, 1_000.0) == []  # nothing to compare with yet


def test_counter_reset_is_not_a_negative_rate() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    # A restarted process: the counter starts again from 0 and reads 40 a second later.
    feed.now += 1.0
    feed.total = 40
    assert detector.observe("login", feed.total, feed.now) is None
    baseline = detector.baseline("login")
    assert baseline is not None and 45 < baseline < 55
    assert feed.run(5 * 60, 50.0) == []


def test_counter_reset_into_a_spike_fires() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    alert = detector.observe("login", 1_000, feed.now + 1.0)
    assert alert is not None
    assert alert.rate_per_second == pytest.approx(1_000.0)


def test_first_observation_only_records() -> None:
    detector = SpikeDetector(SpikeConfig(warmup_seconds=0.0))
    assert detector.observe("r", 10**9, 5.0) is None
    assert detector.baseline("r") is None
    assert detector.observe("r", 10**9 + 20, 6.0) is None  # first rate: no baseline yet
    assert detector.baseline("r") == pytest.approx(20.0)


def test_time_that_does_not_advance_is_ignored() -> None:
    detector = SpikeDetector(SpikeConfig(warmup_seconds=0.0))
    detector.observe("r", 0, 0.0)
    detector.observe("r", 20, 1.0)
    assert detector.observe("r", 10_000, 1.0) is None
    assert detector.observe("r", 10_000, 0.5) is None
    assert detector.baseline("r") == pytest.approx(20.0)
    # the ignored samples did not move the reference point either
    alert = detector.observe("r", 1_020, 2.0)
    assert alert is not None and alert.rate_per_second == pytest.approx(1_000.0)


def test_forget_starts_over() -> None:
    detector = SpikeDetector()
    feed = Feed(detector)
    feed.run(10 * 60, 50.0)
    detector.forget("login")
    detector.forget("never-seen")
    assert detector.baseline("login") is None
    assert detector.observe("login", feed.total + 100_000, feed.now + 1) is None


def test_rules_are_independent() -> None:
    detector = SpikeDetector()
    login = Feed(detector, "login", seed=1)
    search = Feed(detector, "search", seed=2)
    for _ in range(10):
        login.run(60, 50.0)
        search.run(60, 50.0)
    assert login.run(5, 1_000.0) != []
    assert search.run(5, 1_000.0) != []  # login's cool-down is not search's
    assert login.alerts[0].rule == "login" and search.alerts[0].rule == "search"


def test_alert_as_dict_is_json() -> None:
    alert = SpikeAlert("login", 1000.123456, 50.0, 20.00246912, at=12.5)
    data = alert.as_dict()
    assert data == {
        "event": "ratemw.spike",
        "rule": "login",
        "rate_per_second": 1000.123,
        "baseline_per_second": 50.0,
        "multiple": 20.002,
    }
    json.dumps(data, allow_nan=False)
    json.dumps(SpikeAlert("r", 11.0, 0.0, math.inf, 1.0).as_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "field",
    [
        {"multiple": 0.0},
        {"multiple": math.nan},
        {"half_life_seconds": 0.0},
        {"half_life_seconds": math.inf},
        {"floor_per_second": -1.0},
        {"cooldown_seconds": -1.0},
        {"warmup_seconds": math.nan},
    ],
)
def test_config_rejects_bad_values(field: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(field))):
        SpikeConfig(**field)


def test_config_defaults() -> None:
    config = SpikeConfig()
    assert (config.multiple, config.floor_per_second) == (5.0, 10.0)
    assert (config.half_life_seconds, config.cooldown_seconds, config.warmup_seconds) == (
        300.0,
        300.0,
        60.0,
    )
    assert SpikeDetector().config == config
