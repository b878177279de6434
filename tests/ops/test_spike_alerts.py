"""Spike alerts from a limiter's own rejection counters: once per cool-down, never
under steady load, to the log, the metric, the callback and the webhook."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.ops.spikes import SpikeAlert, SpikeConfig

RULES = {"rules": [{"name": "login", "match": {"path": "/login"}, "limit": "1/hour"}]}


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[Any], threading.Event]]:
    posts: list[Any] = []
    got = threading.Event()

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            posts.append(json.loads(body))
            self.send_response(204)
            self.end_headers()
            got.set()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", posts, got
    server.shutdown()
    server.server_close()


def reject(limiter: Limiter, n: int) -> None:
    for _ in range(n):
        assert limiter.decide(RequestInfo(path="/login", peer="198.51.100.9")).status == 429


def test_fires_once_per_cooldown_and_not_under_steady_load(
    webhook: tuple[str, list[Any], threading.Event], caplog: pytest.LogCaptureFixture
) -> None:
    url, posts, got = webhook
    alerts: list[SpikeAlert] = []
    config = SpikeConfig(multiple=5.0, floor_per_second=2.0, half_life_seconds=60.0,
                         cooldown_seconds=120.0, warmup_seconds=30.0)  # fmt: skip
    ops = {"interval_seconds": 0, "spikes": config, "on_spike": alerts.append,
           "spike_webhook": url}  # fmt: skip
    limiter = Limiter(RULES, operations=ops)
    limiter.decide(RequestInfo(path="/login", peer="198.51.100.9"))  # the one admitted
    now = 1000.0
    limiter.ops.tick(now)
    # Steady: 3 rejections a second for 5 minutes of scripted time.
    for _ in range(300):
        reject(limiter, 3)
        now += 1.0
        limiter.ops.tick(now)
    assert alerts == []
    # A spike: 60 a second. One alert, however long it lasts within the cool-down.
    with caplog.at_level(logging.WARNING, logger="ratemw.events"):
        for _ in range(60):
            reject(limiter, 60)
            now += 1.0
            limiter.ops.tick(now)
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.rule == "login" and alert.rate_per_second == pytest.approx(60.0)
    assert 2.5 <= alert.baseline_per_second <= 3.5
    assert limiter.metrics().spike_alerts == {("login",): 1}
    spikes = [r for r in caplog.records if "spike" in r.getMessage()]
    assert len(spikes) == 1 and spikes[0].ratemw["rule"] == "login"  # type: ignore[attr-defined]
    assert got.wait(10)
    assert posts[0]["event"] == "ratemw.spike" and posts[0]["rule"] == "login"
    # After the cool-down, a new jump over the (now raised) baseline fires again.
    for _ in range(130):
        reject(limiter, 3)
        now += 1.0
        limiter.ops.tick(now)
    for _ in range(5):
        reject(limiter, 200)
        now += 1.0
        limiter.ops.tick(now)
    assert len(alerts) == 2
    limiter.close()


def test_below_the_floor_never_fires() -> None:
    alerts: list[SpikeAlert] = []
    config = SpikeConfig(multiple=2.0, floor_per_second=50.0, warmup_seconds=0.0)
    limiter = Limiter(RULES, operations={"interval_seconds": 0, "spikes": config,
                                         "on_spike": alerts.append})  # fmt: skip
    limiter.decide(RequestInfo(path="/login", peer="198.51.100.9"))  # the one admitted
    now = 0.0
    limiter.ops.tick(now)
    for rate in [0] * 30 + [40] * 30:  # from nothing to 40/s: a big multiple, under the floor
        reject(limiter, rate)
        now += 1.0
        limiter.ops.tick(now)
    assert alerts == []
    limiter.close()
