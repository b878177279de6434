"""``ratemw control`` in a child process, for tests that talk to the real command."""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.control import PEOPLE
from tests.processes import launch, stop

DEADLINE_SECONDS = 60.0  # a loaded 2-core machine starts Python slowly


class ControlProcess:
    """``ratemw control --db DB ARGS`` on a free loopback port, its output in a log file,
    the tokens of :data:`tests.control.PEOPLE` configured. Every response is kept in
    ``seen``."""

    def __init__(self, tmp: Path, db: str, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATEMW_")}
        env["RATEMW_CONTROL_TOKENS"] = json.dumps({
            f"sha256:{hashlib.sha256(t.encode()).hexdigest()}": {"principal": p, "role": r}
            for t, (p, r) in PEOPLE.items()
        })  # fmt: skip
        self.log = tmp / f"control-{time.monotonic_ns()}.log"
        command = [
            sys.executable, "-m", "ratemw.cli", "control", "--db", db,
            "--host", "127.0.0.1", "--port", "0", "--log-level", "debug", *args,
        ]  # fmt: skip
        self.process = launch(command, env, self.log, tmp)
        self.seen: list[str] = []
        self.url = self._started(time.monotonic() + DEADLINE_SECONDS)
        self.client = httpx.Client(base_url=self.url, timeout=30.0)

    def _started(self, deadline: float) -> str:
        """Wait for the start line, then for the server to answer; its base URL."""
        while (found := re.search(r"on (http://127\.0\.0\.1:\d+) ", self.output())) is None:
            assert self.process.poll() is None, f"ratemw control exited: {self.output()}"
            assert time.monotonic() < deadline, f"no start line: {self.output()}"
            time.sleep(0.05)  # a poll interval, not synchronisation
        with httpx.Client(base_url=found.group(1), timeout=5.0) as client:
            while True:  # the port is bound before uvicorn accepts: poll
                try:
                    client.get("/healthz")
                    return found.group(1)
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"never answered: {self.output()}"
                    time.sleep(0.05)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = self.client.request(method, path, headers=headers, **kwargs)
        self.seen.append(f"{method} {path} {r.status_code} {r.headers} {r.text}")
        return r

    def close(self) -> str:
        """Stop the process; its whole output."""
        self.client.close()
        stop(self.process)
        return self.output()
