"""What the tests of documented commands share: a page's blocks, and a server started by
the page's command that is asked for six logins."""

from __future__ import annotations

import http.client
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.processes import HOST, launch, stop

DOCS = Path(__file__).resolve().parents[2] / "docs"


def block_after(text: str, caption: str, lang: str) -> str:
    """The first ```lang block after the first occurrence of ``caption``."""
    found = re.compile(rf"^```{lang}\n(.*?)^```$", re.M | re.S).search(text, text.index(caption))
    assert found is not None, (caption, lang)
    return found.group(1)


def post(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path)
        return conn.getresponse().status
    finally:
        conn.close()


def six_logins(
    argv: Sequence[str], env: Mapping[str, str], cwd: Path, port: int, startup: float = 60.0
) -> list[int]:
    """Start ``argv`` (a server on ``port``), POST /login six times once it answers (the
    first answer is the first login), stop it; the statuses. Its log is ``cwd/server.log``."""
    log = cwd / "server.log"
    server = launch(argv, env, log, cwd)
    try:
        deadline = time.monotonic() + startup
        while True:
            try:
                first = post(port, "/login")
                break
            except OSError:
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"no answer within {startup:g} s"
                time.sleep(0.1)
        statuses = [first] + [post(port, "/login") for _ in range(5)]
    finally:
        stop(server)
    text = log.read_text()
    assert "Traceback" not in text and "decide failed" not in text, text
    return statuses
