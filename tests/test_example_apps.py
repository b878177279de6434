"""Smoke test: the example apps under real servers keep one global limit across workers.

The Flask app runs under gunicorn and the Starlette app under uvicorn, 2 workers each,
sharing the session's redis-server (``RATEMW_REDIS_URL``); requests go over real HTTP on
127.0.0.1. The "login" rule (5/minute per address, lease size 1) must admit exactly 5
of 12 concurrent logins from one client, whichever worker serves them.
"""

from __future__ import annotations

import math
import os
import secrets
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.processes import free_port, launch, stop

pytestmark = pytest.mark.redis

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_DEADLINE = 30.0  # generous: a loaded 2-core machine starts 2 Python workers slowly
STOP_DEADLINE = 15.0
ATTEMPTS = 12
LOGIN_LIMIT = 5  # example_apps/ratelimits.yaml: login 5/minute, burst 5
REFILL_SECONDS = 12.0  # one token per 60 / 5 s
MAX_ROUNDS = 8  # client addresses tried until both workers have admitted someone

SERVERS = {
    "flask-gunicorn": [
        sys.executable, "-m", "gunicorn", "example_apps.flask_app.app:app",
        "-b", f"{HOST}:{{port}}", "-w", "2", "-k", "gthread", "--threads", "8",
        "--graceful-timeout", "5", "--log-level", "warning",
    ],
    "starlette-uvicorn": [
        sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app",
        "--host", HOST, "--port", "{port}", "--workers", "2",
        "--log-level", "warning", "--no-access-log",
    ],
}  # fmt: skip


@dataclass
class AppServer:
    url: str
    workers: set[int]  # pids seen answering /health


def _health_pid(url: str) -> int | None:
    try:
        response = httpx.get(f"{url}/health", timeout=2.0, headers={"Connection": "close"})
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return int(response.json()["pid"])


@pytest.fixture(params=sorted(SERVERS))
def app_server(
    request: pytest.FixtureRequest, redis_url: str, tmp_path: Path
) -> Iterator[AppServer]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(RATEMW_REDIS_URL=redis_url, RATEMW_JWT_SECRET=secrets.token_hex(32))
    command = [part.format(port=port) for part in SERVERS[request.param]]
    log = tmp_path / "server.log"
    process = launch(command, env, log, ROOT)
    try:
        url = f"http://{HOST}:{port}"
        workers: set[int] = set()
        deadline = time.monotonic() + START_DEADLINE
        # Poll until both workers have answered (each poll opens a new connection).
        while len(workers) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{request.param} did not bring up 2 workers (saw {sorted(workers)}):\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            pid = _health_pid(url)
            if pid is None:
                time.sleep(0.05)
            else:
                workers.add(pid)
        yield AppServer(url, workers)
    finally:
        stop(process)


def _login(url: str, forwarded_for: str | None) -> httpx.Response:
    headers = {"Connection": "close"}  # a new connection each time: any worker may take it
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for  # believed: 127.0.0.1 is a trusted proxy
    return httpx.post(f"{url}/login", headers=headers, timeout=10.0)


def test_login_limit_is_global_across_workers(app_server: AppServer) -> None:
    admitted_by: set[int] = set()
    rounds = 0
    with ThreadPoolExecutor(max_workers=ATTEMPTS) as pool:
        # One client per round (the first one is the TCP peer itself), 12 logins at once;
        # more clients only until both workers have admitted someone, so that a limit kept
        # per process could not pass by luck.
        while rounds < MAX_ROUNDS and (rounds == 0 or len(admitted_by) < 2):
            client = None if rounds == 0 else f"198.51.100.{rounds}"
            rounds += 1
            started = time.monotonic()
            responses = list(pool.map(_login, [app_server.url] * ATTEMPTS, [client] * ATTEMPTS))
            elapsed = time.monotonic() - started

            ok = [r for r in responses if r.status_code == 200]
            limited = [r for r in responses if r.status_code == 429]
            assert len(ok) + len(limited) == ATTEMPTS, [r.status_code for r in responses]
            # Exactly 5 unless the round itself lasted past a refill (not on a sane machine).
            allowed = LOGIN_LIMIT + math.floor(elapsed / REFILL_SECONDS)
            assert LOGIN_LIMIT <= len(ok) <= allowed, (client, len(ok), elapsed)
            admitted_by.update(int(r.json()["pid"]) for r in ok)

            for r in responses:
                assert r.headers["RateLimit-Policy"] == '"login";q=5;w=60'
                assert r.headers["RateLimit"].startswith('"login";r=')
            for r in limited:
                assert int(r.headers["Retry-After"]) >= 1
                assert r.headers["Content-Type"].startswith("application/problem+json")
                problem = r.json()
                assert problem["status"] == 429
                assert problem["violated-policies"] == ["login"]

    assert admitted_by <= app_server.workers
    assert len(admitted_by) == 2, (
        f"every admitted login came from one worker {admitted_by} in {rounds} rounds: "
        "the requests did not spread over the workers"
    )
