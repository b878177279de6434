"""Top offenders (per process and fleet-wide through Redis) and the rejection log."""

from __future__ import annotations

import io
import json
import logging
import random
import uuid
from collections import Counter
from typing import Any

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.cli import main

API_KEY = "sk_live_this_is_a_secret_key"


def rules(name: str = "login") -> dict[str, Any]:
    return {"rules": [
        {"name": name, "match": {"path": "/login"}, "limit": "1/hour"},
        {"name": "reports", "match": {"path": "/reports"}, "identity": "api_key",
         "limit": "1/hour"},
    ]}  # fmt: skip


def skewed(n: int, seed: int) -> list[str]:
    """A Zipf-like stream of addresses: a few heavy hitters and a long tail."""
    rng = random.Random(seed)
    population = [f"203.0.113.{i}" for i in range(1, 201)]
    weights = [1 / (rank**1.3) for rank in range(1, 201)]
    return rng.choices(population, weights, k=n)


def test_top_offenders_match_exact_counts_on_a_skewed_stream() -> None:
    limiter = Limiter(rules(), operations={"interval_seconds": 0, "top_k": 20})
    stream = skewed(20_000, seed=7)
    exact: Counter[str] = Counter()
    for i, ip in enumerate(stream):
        d = limiter.decide(RequestInfo(path="/login", peer=ip))
        if not d.allowed:
            exact[ip] += 1
        if i % 1000 == 999:
            limiter.ops.tick()
    limiter.ops.tick()
    top = limiter.top("login")["login"]
    assert [ip for ip, _ in top[:5]] == [ip for ip, _ in exact.most_common(5)]
    for ip, count in top[:5]:
        # Space-Saving never under-counts, and over-counts by at most N/k
        assert exact[ip] <= count <= exact[ip] + sum(exact.values()) / 20
    limiter.close()


def test_fleet_wide_top_through_redis(redis_url: str) -> None:
    rule = f"login-{uuid.uuid4().hex[:6]}"
    a = Limiter(rules(rule), redis_url=redis_url, operations={"interval_seconds": 0})
    b = Limiter(rules(rule), redis_url=redis_url, operations={"interval_seconds": 0})
    for limiter, hits in ((a, {"203.0.113.1": 10, "203.0.113.2": 3}),
                          (b, {"203.0.113.1": 5, "203.0.113.3": 7})):  # fmt: skip
        for ip, n in hits.items():
            for _ in range(n):
                limiter.decide(RequestInfo(path="/login", peer=ip))
        limiter.ops.tick()
    out = io.StringIO()
    assert main(["top", "--redis", redis_url, "--rule", rule, "--json"], out=out) == 0
    data = json.loads(out.getvalue())
    got = {row["identity"]: row["rejections"] for row in data[rule]}
    # 1/hour is global: each address's first request, in whichever process, was admitted
    assert got == {"203.0.113.1": 15 - 1, "203.0.113.3": 7 - 1, "203.0.113.2": 3 - 1}
    assert [row["identity"] for row in data[rule]] == ["203.0.113.1", "203.0.113.3",
                                                      "203.0.113.2"]  # fmt: skip
    text = io.StringIO()
    main(["top", "--redis", redis_url, "--rule", rule], out=text)
    assert rule in text.getvalue() and "203.0.113.1" in text.getvalue()
    a.close()
    b.close()


def test_identities_other_than_addresses_are_hashed(caplog: pytest.LogCaptureFixture) -> None:
    limiter = Limiter(rules(), operations={"interval_seconds": 0})
    info = RequestInfo(path="/reports", peer="198.51.100.4", headers={"x-api-key": API_KEY})
    with caplog.at_level(logging.INFO, logger="ratemw.events"):
        for _ in range(3):
            limiter.decide(info)
        limiter.ops.tick()
    ((who, count),) = limiter.top("reports")["reports"]
    assert who.startswith("h:") and len(who) == 34 and count == 2
    lines = [r for r in caplog.records if r.name == "ratemw.events"]
    assert len(lines) == 2
    for record in lines:
        message = record.getMessage()
        assert "rule=reports" in message and "verdict=rejected" in message and who in message
        assert API_KEY not in message and API_KEY not in json.dumps(record.ratemw)  # type: ignore[attr-defined]
        assert record.ratemw["identity"] == who  # type: ignore[attr-defined]
    limiter.close()


def test_the_log_is_sampled_and_capped(caplog: pytest.LogCaptureFixture) -> None:
    limiter = Limiter(rules(), operations={"interval_seconds": 0, "log_every": 10,
                                           "log_per_second": 5})  # fmt: skip
    with caplog.at_level(logging.INFO, logger="ratemw.events"):
        for _ in range(1001):  # 1000 rejections: 100 sampled, 5 logged, the rest summed up
            limiter.decide(RequestInfo(path="/login", peer="198.51.100.5"))
        limiter.ops.tick()
    messages = [r.getMessage() for r in caplog.records if r.name == "ratemw.events"]
    assert len([m for m in messages if m.startswith("ratemw rejected rule=")]) == 5
    limiter.close()
