"""Under gunicorn's multiprocess mode, ``/metrics`` serves the sum of every worker's counts.

Real gunicorn (2 sync workers) on a free loopback port runs ``tests/ops/mp_app.py`` with
``PROMETHEUS_MULTIPROC_DIR`` set and a ``child_exit`` hook calling ``mark_process_dead``.
Limits are in memory, so each worker has its own buckets: "tight" (1/hour, one client)
admits exactly one request per worker that served it. Each worker's operations loop
pushes its counters to its own files; any worker's ``/metrics`` must add them all up.
"""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import free_port, launch, stop

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_DEADLINE = 30.0  # a loaded 2-core machine starts 2 Python workers slowly
SPREAD_DEADLINE = 10.0  # to see both workers answer before the load (not required)
METRICS_DEADLINE = 15.0
STOP_DEADLINE = 15.0
POLL_SECONDS = 0.05
OPS_INTERVAL = 0.1  # mp_app: operations={"interval_seconds": 0.1}
HITS = 40
TIGHTS = 6

GUNICORN_CONF = """\
from prometheus_client import multiprocess


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)
"""


@dataclass
class Server:
    url: str
    log: Path
    workers: set[int]  # pids seen answering before the test's requests


def _get(url: str) -> httpx.Response:
    # A new connection each time: whichever worker accepts it answers.
    return httpx.get(url, headers={"Connection": "close"}, timeout=10.0)


def _pid(url: str) -> int | None:
    try:
        response = _get(f"{url}/")
    except httpx.HTTPError:
        return None
    return int(response.headers["X-Worker-Pid"]) if response.status_code == 200 else None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    prom = tmp_path / "prometheus"
    prom.mkdir()
    conf = tmp_path / "gunicorn_conf.py"
    conf.write_text(GUNICORN_CONF)
    env = {k: v for k, v in os.environ.items() if k.lower() != "prometheus_multiproc_dir"}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.pop("WEB_CONCURRENCY", None)
    command = [
        sys.executable, "-m", "gunicorn", "tests.ops.mp_app:app", "-c", str(conf),
        "-b", f"{HOST}:{port}", "-w", "2", "-k", "sync",
        "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    process = launch(command, env, log, ROOT)
    try:
        url = f"http://{HOST}:{port}"
        workers: set[int] = set()
        deadline = time.monotonic() + START_DEADLINE
        while not workers:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not answer:\n{_tail(log)}")
            pid = _pid(url)
            if pid is None:
                time.sleep(POLL_SECONDS)
            else:
                workers.add(pid)
        # Give the second worker a chance to come up too, so that the load spreads.
        deadline = time.monotonic() + SPREAD_DEADLINE
        while len(workers) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(max_workers=4) as pool:
                workers.update(p for p in pool.map(_pid, [url] * 4) if p is not None)
        yield Server(url, log, workers)
    finally:
        stop(process)


def _decisions(url: str) -> dict[tuple[str, ...], float]:
    """``ratemw_decisions_total`` as some worker's ``/metrics`` serves it:
    (rule, route, tier, verdict, mode) -> value."""
    response = _get(f"{url}/metrics")
    assert response.status_code == 200, response.text
    assert "RateLimit" not in response.headers  # /metrics is under no rule
    return {
        tuple(s.labels[k] for k in ("rule", "route", "tier", "verdict", "mode")): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name == "ratemw_decisions_total"
    }


def test_metrics_sum_the_decisions_of_every_worker(server: Server) -> None:
    with ThreadPoolExecutor(max_workers=8) as pool:
        hits = list(pool.map(_get, [f"{server.url}/hit"] * HITS))
        tights = list(pool.map(_get, [f"{server.url}/tight"] * TIGHTS))

    assert [r.status_code for r in hits] == [200] * HITS
    hit_by = Counter(int(r.headers["X-Worker-Pid"]) for r in hits)
    assert {r.status_code for r in tights} <= {200, 429}, [r.status_code for r in tights]
    # Each worker has its own 1/hour bucket for the one client: it admits one, once.
    tight_by: dict[int, list[int]] = {}
    for r in tights:
        tight_by.setdefault(int(r.headers["X-Worker-Pid"]), []).append(r.status_code)
    assert all(codes.count(200) == 1 for codes in tight_by.values()), tight_by
    served_by = set(hit_by) | set(tight_by)
    assert len(served_by) <= 2, served_by
    print(f"workers: up {sorted(server.workers)}, /hit {dict(hit_by)}, /tight {tight_by}")

    expected: dict[tuple[str, ...], float] = {
        ("hit", "/hit", "*", "allowed", "enforce"): float(HITS),
        ("tight", "/tight", "*", "allowed", "enforce"): float(len(tight_by)),
        ("tight", "/tight", "*", "rejected", "enforce"): float(TIGHTS - len(tight_by)),
    }
    # The workers' operations loops push every OPS_INTERVAL: poll to a deadline.
    deadline = time.monotonic() + METRICS_DEADLINE
    seen = _decisions(server.url)
    while seen != expected:
        hit = seen.get(("hit", "/hit", "*", "allowed", "enforce"), 0.0)
        tight = sum(v for k, v in seen.items() if k[0] == "tight")
        assert hit <= HITS and tight <= TIGHTS, f"counted too much: {seen}"
        if time.monotonic() > deadline:
            pytest.fail(f"/metrics never summed to {expected}; last {seen}\n{_tail(server.log)}")
        time.sleep(POLL_SECONDS)
        seen = _decisions(server.url)

    # And it stays so: several more pushes from each worker count nothing twice.
    settle = time.monotonic() + 5 * OPS_INTERVAL
    while time.monotonic() < settle:
        assert _decisions(server.url) == expected
        time.sleep(POLL_SECONDS)

    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, _tail(server.log)
