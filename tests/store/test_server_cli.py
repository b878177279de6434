"""``python -m ratemw.store.server``: a Redis to try global limits with (docs/operations.md)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import redis


def test_it_prints_a_url_that_answers_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ratemw.store.server"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server is up (or the process ends)
        found = re.match(r"redis at (redis://\S+) ", line)
        assert found is not None, line
        with redis.Redis.from_url(found.group(1), socket_timeout=5) as client:
            assert client.ping()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
