"""Metric values after a scripted run: exact counts per label set."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ratemw import ConfigError, Limiter, RequestInfo
from ratemw.metrics import register
from ratemw.testing import ManualClock

RULES: dict[str, Any] = {
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "login", "match": {"methods": ["POST"], "path": "/login"}, "limit": "5/minute"},
        {
            "name": "search",
            "match": {"path": "/search/**"},
            "limit": {"free": "2/minute", "pro": "4/minute"},
        },
        {"name": "search-new", "match": {"path": "/search/**"}, "limit": "1/minute",
         "mode": "shadow"},
        {"name": "checkout", "match": {"path": "/checkout"}, "concurrency": 1},
    ],
}  # fmt: skip


def limiter(**options: Any) -> Limiter:
    options.setdefault("operations", {"interval_seconds": 0})
    return Limiter(RULES, clock=ManualClock(), **options)


def info(path: str, ip: str = "198.51.100.1", **kw: Any) -> RequestInfo:
    return RequestInfo(method=kw.pop("method", "GET"), path=path, peer=ip, **kw)


def scripted(lim: Limiter) -> None:
    for _ in range(7):  # one rule, the fast path: 5 allowed, 2 rejected
        lim.decide(info("/login", method="POST"))
    for _ in range(3):  # tiered, with a shadow rule beside it
        lim.decide(info("/search/a", tier="free"))
    for _ in range(5):
        lim.decide(info("/search/a", ip="198.51.100.2", tier="pro"))
    held = lim.decide(info("/checkout"))  # concurrency: one slot
    lim.decide(info("/checkout"))
    held.release()
    lim.decide(info("/checkout")).release()


def test_decisions_per_label_set_are_exact() -> None:
    lim = limiter()
    scripted(lim)
    m = lim.metrics()
    assert m.decisions == {
        ("login", "/login", "*", "allowed", "enforce"): 5,
        ("login", "/login", "*", "rejected", "enforce"): 2,
        ("search", "/search/**", "free", "allowed", "enforce"): 2,
        ("search", "/search/**", "free", "rejected", "enforce"): 1,
        ("search", "/search/**", "pro", "allowed", "enforce"): 4,
        ("search", "/search/**", "pro", "rejected", "enforce"): 1,
        # shadow: one per identity would pass, the rest would be rejected
        ("search-new", "/search/**", "*", "allowed", "shadow"): 2,
        ("search-new", "/search/**", "*", "rejected", "shadow"): 6,
        ("checkout", "/checkout", "*", "allowed", "enforce"): 2,
        ("checkout", "/checkout", "*", "rejected", "enforce"): 1,
    }
    # Near the limit: at most 20 % of the quota left after admitting.
    assert m.near_limit == {
        ("login", "/login", "*"): 2,  # the 4th of 5 leaves 1 (20 %), the 5th none
        ("search", "/search/**", "free"): 1,  # 2nd of 2 leaves 0
        ("search", "/search/**", "pro"): 1,  # 4th of 4 leaves 0
    }
    assert m.keys == {("login",): 1, ("search",): 2, ("search-new",): 2, ("checkout",): 1}
    assert m.inflight == {("checkout",): 0}
    assert m.store_errors == 0 and m.lease_calls == 0
    lim.close()


def test_prometheus_exposition_matches() -> None:
    lim = limiter()
    scripted(lim)
    registry = CollectorRegistry()
    register(lim.metrics, registry)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }

    def decisions(rule: str, route: str, tier: str, verdict: str, mode: str) -> float:
        labels = {"rule": rule, "route": route, "tier": tier, "verdict": verdict, "mode": mode}
        return samples[("ratemw_decisions_total", tuple(sorted(labels.items())))]

    assert decisions("login", "/login", "*", "allowed", "enforce") == 5
    assert decisions("login", "/login", "*", "rejected", "enforce") == 2
    assert decisions("search-new", "/search/**", "*", "rejected", "shadow") == 6
    assert decisions("search", "/search/**", "pro", "allowed", "enforce") == 4
    assert samples[("ratemw_keys", (("rule", "search"),))] == 2
    assert samples[("ratemw_inflight", (("rule", "checkout"),))] == 0
    assert samples[("ratemw_brownout_factor", ())] == 1.0
    # the histogram sampled 1 in 64 decisions per rule: nothing yet, but it is there
    assert samples[("ratemw_decision_seconds_count", ())] == 0
    lim.close()


def test_decision_latency_is_sampled() -> None:
    simple = {"name": "items", "match": {"path": "/items"}, "limit": "1000000/second"}
    lim = Limiter({**RULES, "rules": [*RULES["rules"], simple]},
                  operations={"interval_seconds": 0})  # fmt: skip
    assert lim.snapshot.candidates("/items")[2] is not None  # the fast path
    # The fast path is timed once after each operations pass (its next decision) ...
    lim.decide(info("/items"))
    assert lim.metrics().decision_seconds.count == 0
    for _ in range(3):
        lim.ops.tick()
        for _ in range(50):
            assert lim.decide(info("/items")).allowed
    assert lim.metrics().decision_seconds.count == 3
    policy = lim.snapshot.candidates("/items")[2]
    assert policy is not None and policy.fast.__name__ == "decide"  # put back
    # ... the general path one decision in 64.
    for _ in range(64 * 2):
        lim.decide(info("/search/a", ip="10.0.1.1", tier="pro"))
    data = lim.metrics().decision_seconds
    assert data.count == 3 + 2
    assert data.sum > 0.0
    lim.close()


def test_held_slot_is_inflight() -> None:
    lim = limiter()
    held = lim.decide(info("/checkout"))
    assert lim.metrics().inflight == {("checkout",): 1}
    held.release()
    assert lim.metrics().inflight == {("checkout",): 0}
    lim.close()


def test_metrics_off_counts_nothing() -> None:
    lim = limiter(operations={"interval_seconds": 0, "metrics": False})
    scripted(lim)
    m = lim.metrics()
    assert m.decisions == {} and m.near_limit == {}
    lim.close()


def test_config_reloads_by_result() -> None:
    lim = limiter()
    lim.update_rules(RULES)
    with pytest.raises(ConfigError):
        lim.update_rules({"rules": [{"name": "x", "match": {"path": "/x"}, "limit": "0/minute"}]})
    assert lim.metrics().config_reloads == {("ok",): 1, ("error",): 1}
    lim.close()


def test_counters_survive_a_reload() -> None:
    lim = limiter()
    for _ in range(3):
        lim.decide(info("/login", method="POST"))
    lim.update_rules({**RULES, "rules": [*RULES["rules"][1:]]})  # login removed ...
    lim.update_rules(RULES)  # ... and back: Prometheus counters never go down
    lim.decide(info("/login", method="POST"))
    assert lim.metrics().decisions[("login", "/login", "*", "allowed", "enforce")] == 4
    lim.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_store_errors_and_error_verdict_with_redis_down() -> None:
    rules = {"rules": [{"name": "pay", "match": {"path": "/pay"}, "limit": "5/second",
                        "on_store_error": "closed"}]}  # fmt: skip
    lim = Limiter(
        rules,
        redis_url=f"redis://127.0.0.1:{_closed_port()}/0",
        operations={"interval_seconds": 0},
    )
    statuses = [lim.decide(info("/pay")).status for _ in range(3)]
    assert statuses == [503, 503, 503]  # never a 500
    m = lim.metrics()
    assert m.decisions == {("pay", "/pay", "*", "error", "enforce"): 3}
    assert m.store_errors >= 1
    assert m.store_latency.count >= 1
    lim.close()


def test_store_metrics_with_real_redis(redis_url: str) -> None:
    rules = {"rules": [{"name": "api", "match": {"path": "/api/**"}, "limit": "100/second"}]}
    lim = Limiter(rules, redis_url=redis_url, operations={"interval_seconds": 0})
    for _ in range(20):
        assert lim.decide(info("/api/x")).allowed
    m = lim.metrics()
    assert m.decisions == {("api", "/api/**", "*", "allowed", "enforce"): 20}
    assert m.lease_calls >= 1
    assert m.store_latency.count >= m.lease_calls
    assert m.store_errors == 0
    assert set(m.breaker_state.values()) == {0}  # closed
    lim.close()
