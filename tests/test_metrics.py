from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import prometheus_client
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.test import Client

from ratemw.metrics import (
    MultiprocessExporter,
    RatemwCollector,
    asgi_app,
    multiprocess_enabled,
    register,
    wsgi_app,
)
from ratemw.ops.prometheus_mp import _replay
from ratemw.ops.stats import (
    DECISION_BUCKETS,
    STORE_BUCKETS,
    Histogram,
    HistogramData,
    MetricsSnapshot,
)
from ratemw.types import ASGIApp

ROOT = Path(__file__).resolve().parents[1]
DECISION_LE = ["1e-06", "2.5e-06", "5e-06", "1e-05", "2.5e-05", "5e-05", "0.0001", "0.00025",
               "0.001", "0.01", "0.1", "+Inf"]  # fmt: skip
STORE_LE = ["0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05",
            "0.1", "0.5", "+Inf"]  # fmt: skip
LOGIN = ("login", "/login", "free")
Key = tuple[str, frozenset[tuple[str, str]]]


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def scrape(registry: CollectorRegistry) -> dict[Key, float]:
    text = generate_latest(registry).decode()
    return {
        key(s.name, **s.labels): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")  # prometheus_client's own Counter adds these
    }


def hist(bounds: tuple[float, ...], counts: dict[int, int], total: float) -> HistogramData:
    """``counts`` maps bucket index (len(bounds) is +Inf) to its non-cumulative count."""
    return HistogramData(bounds, tuple(counts.get(i, 0) for i in range(len(bounds) + 1)), total)


def hist_samples(
    name: str, les: list[str], cumulative: list[int], total: float
) -> dict[Key, float]:
    out = {key(f"{name}_bucket", le=le): float(n) for le, n in zip(les, cumulative, strict=True)}
    out[key(f"{name}_count")] = float(cumulative[-1])
    out[key(f"{name}_sum")] = total
    return out


SNAP_A = MetricsSnapshot(
    decisions={(*LOGIN, "allowed", "enforce"): 5, (*LOGIN, "rejected", "enforce"): 2},
    near_limit={LOGIN: 1},
    decision_seconds=hist(DECISION_BUCKETS, {1: 3, 3: 1, 11: 2}, 0.5),
    store_errors=3,
    store_latency=hist(STORE_BUCKETS, {4: 5}, 0.01),
    lease_calls=11,
    breaker_state={("redis-a:6379",): 2},
    inflight={("login",): 4},
    config_reloads={("ok",): 2, ("error",): 1},
    keys={("login",): 10},
    spike_alerts={("login",): 1},
    bans={("login",): 2},
    banned=2,
    brownout_factor=0.5,
)
SNAP_B = MetricsSnapshot(
    decisions={(*LOGIN, "allowed", "enforce"): 7, ("api", "/api", "pro", "allowed", "shadow"): 4},
    near_limit={LOGIN: 2},
    decision_seconds=hist(DECISION_BUCKETS, {0: 1, 3: 2}, 1e-6 + 2 * 8e-6),
    store_errors=1,
    store_latency=hist(STORE_BUCKETS, {10: 1, 11: 1}, 1.25),
    lease_calls=9,
    breaker_state={("redis-a:6379",): 1, ("redis-b:6379",): 0},
    inflight={("login",): 1, ("api",): 3},
    config_reloads={("ok",): 1, ("error",): 0},
    keys={("login",): 5},
    spike_alerts={},
    bans={("login",): 1},
    banned=1,
    brownout_factor=0.8,
)
# A and B read together, each value written out by hand.
EXPECTED_A_B: dict[Key, float] = {
    key("ratemw_decisions_total", rule="login", route="/login", tier="free", verdict="allowed",
        mode="enforce"): 12,
    key("ratemw_decisions_total", rule="login", route="/login", tier="free", verdict="rejected",
        mode="enforce"): 2,
    key("ratemw_decisions_total", rule="api", route="/api", tier="pro", verdict="allowed",
        mode="shadow"): 4,
    key("ratemw_near_limit_total", rule="login", route="/login", tier="free"): 3,
    key("ratemw_store_errors_total"): 4,
    key("ratemw_lease_calls_total"): 20,
    key("ratemw_config_reloads_total", result="ok"): 3,
    key("ratemw_config_reloads_total", result="error"): 1,
    key("ratemw_spike_alerts_total", rule="login"): 1,
    key("ratemw_bans_total", rule="login"): 3,
    key("ratemw_breaker_state", node="redis-a:6379"): 2,  # max of 2 and 1
    key("ratemw_breaker_state", node="redis-b:6379"): 0,
    key("ratemw_inflight", rule="login"): 5,
    key("ratemw_inflight", rule="api"): 3,
    key("ratemw_keys", rule="login"): 15,
    key("ratemw_banned"): 2,  # max of 2 and 1: with Redis every process holds every ban
    key("ratemw_brownout_factor"): 0.5,  # min
    **hist_samples("ratemw_decision_seconds", DECISION_LE,
                   [1, 4, 4, 7, 7, 7, 7, 7, 7, 7, 7, 9], 0.5 + 1.7e-5),
    **hist_samples("ratemw_store_latency_seconds", STORE_LE,
                   [0, 0, 0, 0, 5, 5, 5, 5, 5, 5, 6, 7], 1.26),
}  # fmt: skip


class Moving:
    """A source whose snapshot the test swaps."""

    def __init__(self, snapshot: MetricsSnapshot) -> None:
        self.snapshot = snapshot

    def __call__(self) -> MetricsSnapshot:
        return self.snapshot


def collector_registry(*sources: Callable[[], MetricsSnapshot]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RatemwCollector(*sources))
    return registry


def test_collector_exports_every_metric_of_one_source() -> None:
    got = scrape(collector_registry(lambda: SNAP_A))
    assert got[key("ratemw_decisions_total", rule="login", route="/login", tier="free",
                   verdict="rejected", mode="enforce")] == 2  # fmt: skip
    assert got[key("ratemw_store_errors_total")] == 3
    assert got[key("ratemw_brownout_factor")] == 0.5
    assert {k: v for k, v in got.items() if k[0].startswith("ratemw_decision_seconds")} == (
        hist_samples("ratemw_decision_seconds", DECISION_LE,
                     [0, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 6], 0.5)
    )  # fmt: skip


def test_collector_sums_two_sources_exactly() -> None:
    got = scrape(collector_registry(lambda: SNAP_A, lambda: SNAP_B))
    assert got.keys() == EXPECTED_A_B.keys()
    for k, value in EXPECTED_A_B.items():
        assert got[k] == pytest.approx(value), k


def test_exposed_names_and_types() -> None:
    text = generate_latest(collector_registry(lambda: SNAP_A)).decode()
    types = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    assert types == {
        "ratemw_decisions_total": "counter", "ratemw_near_limit_total": "counter",
        "ratemw_decision_seconds": "histogram", "ratemw_store_errors_total": "counter",
        "ratemw_store_latency_seconds": "histogram", "ratemw_lease_calls_total": "counter",
        "ratemw_breaker_state": "gauge", "ratemw_inflight": "gauge",
        "ratemw_config_reloads_total": "counter", "ratemw_keys": "gauge",
        "ratemw_spike_alerts_total": "counter", "ratemw_bans_total": "counter",
        "ratemw_banned": "gauge", "ratemw_brownout_factor": "gauge",
    }  # fmt: skip


def test_failing_source_is_skipped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("limiter closed")

    with caplog.at_level(logging.WARNING, logger="ratemw"):
        got = scrape(collector_registry(lambda: SNAP_A, broken))
    assert got == scrape(collector_registry(lambda: SNAP_A))
    [record] = caplog.records
    assert record.name == "ratemw"
    assert record.levelno == logging.WARNING
    assert record.exc_info is not None


def test_no_readable_source_exports_names_without_samples() -> None:
    def broken() -> MetricsSnapshot:
        raise RuntimeError("down")

    registry = collector_registry(broken)
    assert scrape(registry) == {}
    assert b"# TYPE ratemw_decisions_total counter" in generate_latest(registry)


def test_register_is_idempotent_per_registry() -> None:
    registry = CollectorRegistry()
    source_a = Moving(SNAP_A)
    first = register(source_a, registry)
    assert register(lambda: SNAP_B, registry) is first
    assert register(source_a, registry) is first  # and source_a is still read once
    got = scrape(registry)
    assert got.keys() == EXPECTED_A_B.keys()
    assert got[key("ratemw_lease_calls_total")] == 20
    other = CollectorRegistry()
    assert register(lambda: SNAP_A, other) is not first


def test_register_defaults_to_the_global_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    monkeypatch.setattr(prometheus_client, "REGISTRY", CollectorRegistry())
    gc.collect()  # the default registry exports every live limiter: none left over, then
    register(lambda: SNAP_A)
    response = Client(wsgi_app()).get("/metrics")
    assert response.status_code == 200
    assert b"ratemw_lease_calls_total 11.0" in response.data


@pytest.mark.parametrize(
    ("bounds", "counts", "total"),
    [
        (DECISION_BUCKETS, {1: 3, 3: 1, 11: 2}, 3 * 2e-6 + 8e-6 + 0.2 + 0.3),
        (DECISION_BUCKETS, {0: 4}, 0.0),
        (DECISION_BUCKETS, {2: 2}, 2 * 2.5e-6),  # every value on its bucket's floor
        (STORE_BUCKETS, {4: 5, 10: 1}, 5 * 2.5e-3 + 0.5),  # every value on its ceiling
        (STORE_BUCKETS, {11: 3}, 3.0),
        (STORE_BUCKETS, {}, 0.0),
    ],
)
def test_replayed_observations_land_in_their_buckets_and_keep_the_sum(
    bounds: tuple[float, ...], counts: dict[int, int], total: float
) -> None:
    wanted = hist(bounds, counts, total)
    replayed = Histogram(bounds)
    for value in _replay(bounds, wanted.counts, total):
        replayed.observe(value)
    assert replayed.data().counts == wanted.counts
    assert replayed.data().sum == pytest.approx(total, rel=1e-9, abs=1e-15)


def test_exporter_pushes_deltas_in_process() -> None:
    a, b = Moving(MetricsSnapshot()), Moving(SNAP_B)
    exporter = MultiprocessExporter(a)
    exporter.add(b)
    exporter.sync()
    a.snapshot = SNAP_A
    exporter.sync()
    exporter.sync()  # nothing grew: nothing added
    got = scrape(exporter.registry)
    assert got.keys() == EXPECTED_A_B.keys()
    for k, value in EXPECTED_A_B.items():  # replayed sums too, up to float rounding
        assert got[k] == pytest.approx(value, rel=1e-9), k


def test_exporter_restarted_source_and_vanished_gauges() -> None:
    source = Moving(SNAP_A)
    exporter = MultiprocessExporter(source)
    exporter.sync()
    source.snapshot = MetricsSnapshot(store_errors=1, brownout_factor=1.0)  # a new limiter
    exporter.sync()
    got = scrape(exporter.registry)
    assert got[key("ratemw_store_errors_total")] == 4  # 3, then 1 counted from zero
    assert got[key("ratemw_inflight", rule="login")] == 0  # the rule is gone
    assert got[key("ratemw_breaker_state", node="redis-a:6379")] == 0
    assert got[key("ratemw_brownout_factor")] == 1.0


def test_exporter_failing_source_counts_later(caplog: pytest.LogCaptureFixture) -> None:
    state = {"fail": True}

    def flaky() -> MetricsSnapshot:
        if state["fail"]:
            raise RuntimeError("down")
        return SNAP_A

    exporter = MultiprocessExporter(flaky)
    with caplog.at_level(logging.WARNING, logger="ratemw"):
        exporter.sync()
    assert len(caplog.records) == 1
    got = scrape(exporter.registry)
    assert got[key("ratemw_lease_calls_total")] == 0
    assert got[key("ratemw_brownout_factor")] == 1.0  # the default, not prometheus' 0
    state["fail"] = False
    exporter.sync()
    assert scrape(exporter.registry)[key("ratemw_lease_calls_total")] == 11


def test_exporter_thread_syncs_until_stopped() -> None:
    source = Moving(MetricsSnapshot(lease_calls=1))
    exporter = MultiprocessExporter(source)
    exporter.start(interval_seconds=0.01)
    try:
        source.snapshot = MetricsSnapshot(lease_calls=5)
        deadline = time.monotonic() + 10
        while scrape(exporter.registry).get(key("ratemw_lease_calls_total")) != 5:
            assert time.monotonic() < deadline, "the exporter thread never synced"
            time.sleep(0.01)  # polling with a deadline, not waiting on timing
    finally:
        exporter.stop(timeout_seconds=10)
    source.snapshot = MetricsSnapshot(lease_calls=9)
    assert scrape(exporter.registry)[key("ratemw_lease_calls_total")] == 5  # stopped


def test_stop_syncs_one_last_time() -> None:
    source = Moving(MetricsSnapshot(lease_calls=2))
    exporter = MultiprocessExporter(source)
    exporter.start(interval_seconds=3600)
    exporter.stop(timeout_seconds=10)
    assert scrape(exporter.registry)[key("ratemw_lease_calls_total")] == 2


def test_multiprocess_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
    assert not multiprocess_enabled()
    monkeypatch.setenv("prometheus_multiproc_dir", "/tmp/x")
    assert multiprocess_enabled()
    monkeypatch.delenv("prometheus_multiproc_dir")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp/x")
    assert multiprocess_enabled()


def test_wsgi_app_serves_the_registry() -> None:
    registry = CollectorRegistry()
    register(lambda: SNAP_A, registry)
    response = Client(wsgi_app(registry)).get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert "ratemw_decisions_total{" in response.get_data(as_text=True)


def _asgi_get(app: ASGIApp) -> httpx.Response:
    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/metrics")

    return asyncio.run(main())


def test_asgi_app_serves_the_registry() -> None:
    registry = CollectorRegistry()
    register(lambda: SNAP_A, registry)
    response = _asgi_get(asgi_app(registry))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "ratemw_decisions_total{" in response.text


# Runs in a fresh interpreter: prometheus_client picks multiprocess mode at import time.
WORKER = """
import sys
from ratemw.metrics import MultiprocessExporter
from ratemw.ops.stats import DECISION_BUCKETS, STORE_BUCKETS, HistogramData, MetricsSnapshot

k = int(sys.argv[1])


def snapshot(step):
    decision = [0] * 12
    decision[1], decision[11] = 2 * step, step  # 2e-06 each, and 0.25 each
    store = [0] * 12
    store[4] = 3 * k * step  # 0.002 each
    return MetricsSnapshot(
        decisions={("login", "/login", "free", "allowed", "enforce"): 10 * k * step},
        near_limit={("login", "/login", "free"): k * step},
        decision_seconds=HistogramData(DECISION_BUCKETS, tuple(decision), step * 0.250004),
        store_errors=k * step,
        store_latency=HistogramData(STORE_BUCKETS, tuple(store), 3 * k * step * 0.002),
        lease_calls=100 * k * step,
        breaker_state={("redis-a:6379",): k},
        inflight={("login",): k * step},
        config_reloads={("ok",): step, ("error",): k},
        keys={("login",): 10 * k},
        spike_alerts={("login",): k},
        bans={("login",): step},
        banned=k,
        brownout_factor=0.5 if k == 2 else 0.9,
    )


current = [snapshot(1)]
exporter = MultiprocessExporter(lambda: current[0])
exporter.sync()
current[0] = snapshot(2)
exporter.sync()
"""

# Both workers at step 2; totals pushed instead of deltas would add step 1 again.
EXPECTED_WORKERS: dict[Key, float] = {
    key("ratemw_decisions_total", rule="login", route="/login", tier="free", verdict="allowed",
        mode="enforce"): 60,
    key("ratemw_near_limit_total", rule="login", route="/login", tier="free"): 6,
    key("ratemw_store_errors_total"): 6,
    key("ratemw_lease_calls_total"): 600,
    key("ratemw_config_reloads_total", result="ok"): 4,
    key("ratemw_config_reloads_total", result="error"): 3,
    key("ratemw_spike_alerts_total", rule="login"): 3,
    key("ratemw_bans_total", rule="login"): 4,
    key("ratemw_breaker_state", node="redis-a:6379"): 2,
    key("ratemw_inflight", rule="login"): 6,
    key("ratemw_keys", rule="login"): 30,
    key("ratemw_banned"): 2,  # livemax of the workers' 1 and 2
    key("ratemw_brownout_factor"): 0.5,
    **hist_samples("ratemw_decision_seconds", DECISION_LE,
                   [0, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 12], 4 * 0.250004),
    **hist_samples("ratemw_store_latency_seconds", STORE_LE,
                   [0, 0, 0, 0, 18, 18, 18, 18, 18, 18, 18, 18], 18 * 0.002),
}  # fmt: skip


def test_multiprocess_workers_are_summed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path)
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(k)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for k in (1, 2)
    ]  # fmt: skip
    for worker in workers:
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 0, err
    assert len({p.name for p in tmp_path.glob("counter_*.db")}) == 2  # one file per process

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    got = scrape(registry)
    assert got.keys() == EXPECTED_WORKERS.keys()
    for k, value in EXPECTED_WORKERS.items():
        assert got[k] == pytest.approx(value, rel=1e-9), k

    # Without a registry, both endpoints serve the same sum in multiprocess mode.
    response = Client(wsgi_app()).get("/metrics")
    assert response.status_code == 200
    assert "ratemw_lease_calls_total 600.0" in response.get_data(as_text=True)
    assert "ratemw_lease_calls_total 600.0" in _asgi_get(asgi_app()).text
