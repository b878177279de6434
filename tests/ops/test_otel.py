"""OpenTelemetry: spans per store call under the current span, the decision on the current
span, meters mirroring the Prometheus metrics; the SDK with in-memory exporters."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.trace import SpanKind

from ratemw import Limiter, RequestInfo
from ratemw.ops import otel
from ratemw.ops.prometheus import _COUNTERS, _GAUGES
from ratemw.testing import ManualClock
from tests.integrations.otel_spans import Traced, traced

__all__ = ["traced"]  # the fixture, for pytest

RULES: dict[str, Any] = {
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "login", "match": {"methods": ["POST"], "path": "/login"}, "limit": "2/minute"},
        {"name": "search", "match": {"path": "/search"},
         "limit": {"free": "1/minute", "pro": "5/minute"}},
        {"name": "search-new", "match": {"path": "/search"}, "limit": "1/hour", "mode": "shadow"},
    ],
}  # fmt: skip


def info(path: str, method: str = "GET", tier: str | None = None) -> RequestInfo:
    return RequestInfo(method=method, path=path, peer="198.51.100.7", tier=tier)


def test_names_are_pinned() -> None:
    # docs/operations.md lists these; a renamed metric or attribute is a breaking change
    assert otel.SPAN_NAMES == ("ratemw.store.<operation>",)
    assert set(otel.ATTRIBUTES) == {
        "ratemw.rule", "ratemw.tier", "ratemw.verdict", "ratemw.mode", "ratemw.status",
        "ratemw.store.operation",
    }  # fmt: skip
    assert otel.meter_names() == [
        "ratemw.decisions", "ratemw.near_limit", "ratemw.store_errors", "ratemw.lease_calls",
        "ratemw.config_reloads", "ratemw.spike_alerts", "ratemw.bans", "ratemw.breaker_state",
        "ratemw.inflight", "ratemw.keys", "ratemw.banned", "ratemw.brownout_factor",
    ]  # fmt: skip
    assert len(otel.meter_names()) == len(_COUNTERS) + len(_GAUGES)


def test_off_without_a_real_provider() -> None:
    otel.use(None)  # the global provider here is the API's proxy: nothing installed
    assert otel.refresh() is False
    assert otel.active is False


def test_decision_on_the_current_span(traced: Traced) -> None:
    limiter = Limiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    verdicts = []
    for _ in range(3):
        with traced.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER):
            limiter.decide(info("/login", "POST"))
    with traced.tracer.start_as_current_span("GET /search", kind=SpanKind.SERVER):
        limiter.decide(info("/search", tier="pro"))
    with traced.tracer.start_as_current_span("GET /search", kind=SpanKind.SERVER):
        limiter.decide(info("/search", tier="pro"))
    for span in traced.spans():
        verdicts.append({k: v for k, v in (span.attributes or {}).items() if k != "ratemw.tier"})
    assert verdicts[:3] == [
        {"ratemw.rule": "login", "ratemw.verdict": "allowed", "ratemw.mode": "enforce",
         "ratemw.status": 200},
        {"ratemw.rule": "login", "ratemw.verdict": "allowed", "ratemw.mode": "enforce",
         "ratemw.status": 200},
        {"ratemw.rule": "login", "ratemw.verdict": "rejected", "ratemw.mode": "enforce",
         "ratemw.status": 429},
    ]  # fmt: skip
    second_search = traced.spans()[4].attributes or {}
    assert second_search["ratemw.tier"] == "pro"
    assert second_search["ratemw.mode"] == "shadow"  # only the shadow rule would reject
    assert "search" in str(second_search["ratemw.rule"])
    # local decisions make no span of their own: only the five server spans exist
    assert [s.name for s in traced.spans()] == ["POST /login"] * 3 + ["GET /search"] * 2
    limiter.close()


def test_a_store_call_is_a_child_of_the_current_span(traced: Traced, redis_url: str) -> None:
    limiter = Limiter(RULES, redis_url=redis_url, operations={"interval_seconds": 0})
    try:
        with traced.tracer.start_as_current_span("POST /login", kind=SpanKind.SERVER) as server:
            limiter.decide(info("/login", "POST"))
        spans = traced.spans()
        store = [s for s in spans if s.name.startswith("ratemw.store.")]
        assert store, [s.name for s in spans]
        first = store[0]
        assert first.kind == SpanKind.CLIENT
        assert first.parent is not None
        assert first.parent.span_id == server.get_span_context().span_id
        assert first.attributes is not None
        assert first.attributes["ratemw.store.operation"] in {"take", "heartbeat", "take_many"}
        # no raw identity or key in any span attribute
        for span in spans:
            assert "198.51.100.7" not in repr(dict(span.attributes or {}))
    finally:
        limiter.close()


def test_meters_mirror_the_prometheus_counters() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    limiter = Limiter(RULES, clock=ManualClock(), operations={"interval_seconds": 0})
    try:
        otel.instrument_meters(provider, [limiter.metrics])
        for _ in range(3):
            limiter.decide(info("/login", "POST"))
        data = reader.get_metrics_data()
        assert data is not None
        points: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        key = tuple(sorted((point.attributes or {}).items()))
                        value = point.value  # type: ignore[union-attr]  # sums and gauges only
                        points[metric.name, key] = points.get((metric.name, key), 0) + value
        want = limiter.metrics().decisions
        ours = {
            (dict(k)["rule"], dict(k)["verdict"]): v
            for (name, k), v in points.items()
            if name == "ratemw.decisions" and dict(k)["rule"] == "login"
        }
        assert ours == {
            (rule, verdict): n
            for (rule, _route, _tier, verdict, _mode), n in want.items()
            if rule == "login"
        }
        assert ours == {("login", "allowed"): 2, ("login", "rejected"): 1}
    finally:
        limiter.close()
        provider.shutdown()
