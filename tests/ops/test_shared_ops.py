"""Bans and brownout across processes through the real Redis, and the CLI that drives them."""

from __future__ import annotations

import io
import json
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.cli import main
from ratemw.decision import REDUCED_CAPACITY_TYPE
from ratemw.ops.shared import Layout
from ratemw.store.redis import RedisStore
from tests.ops import ops_workers

INTERVAL = 0.1  # the workers' operations interval


class Worker:
    def __init__(self, ctx: Any, url: str, rules: dict[str, Any]) -> None:
        self.inbox, self.outbox = ctx.Queue(), ctx.Queue()
        self.process = ctx.Process(
            target=ops_workers.serve, args=(url, rules, self.inbox, self.outbox), daemon=True
        )
        self.process.start()
        self._answer()

    def _answer(self) -> dict[str, Any]:
        answer: dict[str, Any] = self.outbox.get(timeout=60)
        assert "error" not in answer, answer.get("error")
        return answer

    def decide(self, path: str, ip: str, n: int = 1) -> list[tuple[int, str, int, Any]]:
        self.inbox.put(("decide", (path, ip, n)))
        answers: list[tuple[int, str, int, Any]] = self._answer()["answers"]
        return answers

    def brownout(self) -> float | None:
        self.inbox.put(("brownout", ()))
        factor: float | None = self._answer()["brownout"]
        return factor

    def stop(self) -> None:
        self.inbox.put(("stop", ()))
        self._answer()
        self.process.join(10)


@pytest.fixture
def spawn(redis_url: str) -> Iterator[Callable[[dict[str, Any]], Worker]]:
    ctx = multiprocessing.get_context("spawn")
    started: list[Worker] = []

    def start(rules: dict[str, Any]) -> Worker:
        worker = Worker(ctx, redis_url, rules)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.process.is_alive():
            worker.stop()


def poll(check: Callable[[], Any], deadline_seconds: float = 10.0, pause: float = 0.02) -> Any:
    """``check()`` until it returns something truthy, within the deadline."""
    end = time.monotonic() + deadline_seconds
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < end, "deadline passed"
        time.sleep(pause)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def client(url: str) -> Any:
    return RedisStore(url).redis()


def test_a_ban_in_one_process_is_honoured_by_another_and_expires(
    spawn: Callable[[dict[str, Any]], Worker], redis_url: str
) -> None:
    rule = f"login-{uuid.uuid4().hex[:6]}"
    rules = {"rules": [{"name": rule, "match": {"path": "/login"}, "limit": "2/minute",
                        "penalty": {"after": "3/minute", "ban": "2s"}}]}  # fmt: skip
    a, b = spawn(rules), spawn(rules)
    ip = "203.0.113.50"
    # Process A: the global limit admits 2, then 4 rejections cross the penalty.
    statuses = [s for s, *_ in a.decide("/login", ip, 6)]
    assert statuses == [200, 200, 429, 429, 429, 429]
    layout = Layout()
    redis = client(redis_url)
    poll(lambda: layout.active_bans(redis, time.time()).get(rule))
    seen = time.monotonic()
    # Process B has never rejected this address: it learns the ban through Redis.
    banned = poll(lambda: [x for x in b.decide("/login", ip) if x[1] == "ban"])
    learned = time.monotonic() - seen
    status, _, retry, problem = banned[0]
    assert status == 429 and 1 <= retry <= 2
    assert "banned" in problem["detail"]
    # within one interval of the ban reaching Redis (the poll and IPC add a little)
    assert learned < INTERVAL + 1.0, learned
    # The ban is this address's alone.
    assert b.decide("/login", "203.0.113.51")[0][0] == 200
    # The ban ends by itself: both processes admit the address again, Redis forgets it.
    poll(lambda: b.decide("/login", ip)[0][1] != "ban", deadline_seconds=10)
    assert layout.list_bans(redis, time.time()) == []


def test_cli_bans_list_and_lifts(redis_url: str) -> None:
    rule = f"api-{uuid.uuid4().hex[:6]}"
    rules = {"rules": [{"name": rule, "match": {"path": "/api/**"}, "limit": "100/second"}]}
    lim = Limiter(rules, redis_url=redis_url, operations={"interval_seconds": 0})
    info = RequestInfo(path="/api/x", peer="203.0.113.9")
    assert lim.decide(info).allowed
    status, out = cli("ban", "add", "--redis", redis_url, "--rule", rule, "ip:203.0.113.9",
                      "--for", "1m", "--reason", "abuse")  # fmt: skip
    assert status == 0 and "203.0.113.9" in out
    lim.ops.tick()
    d = lim.decide(info)
    assert (d.status, d.action) == (429, "ban") and 55 <= d.retry_after_seconds <= 60
    assert lim.decide(RequestInfo(path="/api/x", peer="203.0.113.10")).allowed
    status, out = cli("ban", "list", "--redis", redis_url, "--json")
    rows = [r for r in json.loads(out) if r["rule"] == rule]
    assert [(r["identity"], r["reason"]) for r in rows] == [("203.0.113.9", "abuse")]
    assert lim.metrics().banned == 1
    status, out = cli("ban", "remove", "--redis", redis_url, "--rule", rule, "ip:203.0.113.9")
    assert status == 0
    lim.ops.tick()
    assert lim.decide(info).allowed
    assert cli("ban", "remove", "--redis", redis_url, "--rule", rule, "ip:203.0.113.9")[0] == 1
    assert cli("ban", "add", "--redis", redis_url, "--rule", rule, "nonsense")[0] == 2
    lim.close()


def test_brownout_scales_limits_in_every_process_and_ends_at_its_deadline(
    spawn: Callable[[dict[str, Any]], Worker], redis_url: str
) -> None:
    rule = f"search-{uuid.uuid4().hex[:6]}"
    rules = {"rules": [
        {"name": rule, "match": {"path": "/search"}, "limit": "10/minute", "lease": {"size": 1}},
        {"name": "other", "match": {"path": "/other"}, "limit": "10/minute", "lease": {"size": 1}},
    ]}  # fmt: skip
    a, b = spawn(rules), spawn(rules)
    redis = client(redis_url)
    Layout().clear_brownout(redis)
    status, out = cli("brownout", "set", "--redis", redis_url, "--factor", "0.5",
                      "--rules", rule, "--for", "3s", "--reason", "incident")  # fmt: skip
    assert status == 0, out
    started = time.monotonic()
    for w in (a, b):
        poll(lambda w=w: w.brownout() == 0.5)  # type: ignore[misc]
    # 10/minute is 5/minute now, across both processes together.
    answers = a.decide("/search", "198.51.100.70", 4) + b.decide("/search", "198.51.100.70", 4)
    assert [s for s, *_ in answers].count(200) == 5
    refused = [x for x in answers if x[0] != 200]
    assert all(s == 503 and action == "brownout" for s, action, _, _ in refused)
    assert all(p["type"] == REDUCED_CAPACITY_TYPE and retry >= 1 for _, _, retry, p in refused)
    # rules the brownout does not name keep their limit
    other = a.decide("/other", "198.51.100.70", 6) + b.decide("/other", "198.51.100.70", 6)
    assert [s for s, *_ in other].count(200) == 10
    status, out = cli("brownout", "show", "--redis", redis_url, "--json")
    assert json.loads(out)["factor"] == 0.5
    # It ends by itself at its deadline, in both processes.
    for w in (a, b):
        poll(lambda w=w: w.brownout() is None, deadline_seconds=10)  # type: ignore[misc]
    assert time.monotonic() - started >= 2.0  # not before its deadline (3 s, minus polling)
    fresh = a.decide("/search", "198.51.100.71", 6) + b.decide("/search", "198.51.100.71", 6)
    assert [s for s, *_ in fresh].count(200) == 10
    assert cli("brownout", "show", "--redis", redis_url)[1] == "no brownout\n"


def test_brownout_clear_from_the_cli(redis_url: str) -> None:
    rules = {"rules": [{"name": "s", "match": {"path": "/s"}, "limit": "4/minute"}]}
    lim = Limiter(rules, redis_url=redis_url, operations={"interval_seconds": 0})
    assert cli("brownout", "set", "--redis", redis_url, "--factor", "0.5", "--for", "1m")[0] == 0
    lim.ops.tick()
    assert lim.metrics().brownout_factor == 0.5
    statuses = [lim.decide(RequestInfo(path="/s", peer="10.9.9.9")).status for _ in range(3)]
    assert statuses == [200, 200, 503]
    assert cli("brownout", "clear", "--redis", redis_url)[1] == "brownout cleared\n"
    lim.ops.tick()
    assert lim.metrics().brownout_factor == 1.0
    # the original bucket kept its state: 2 taken of 4
    statuses = [lim.decide(RequestInfo(path="/s", peer="10.9.9.9")).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert cli("brownout", "set", "--redis", redis_url, "--factor", "2", "--for", "1m")[0] == 2
    lim.close()
