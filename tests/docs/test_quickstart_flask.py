"""The Flask quickstart, as written: its rules file and app.py from the page, served by
gunicorn with the page's command, and the page's curl loop's answers (issue #16)."""

from __future__ import annotations

import http.client
import os
import re
import sys
import time
from pathlib import Path

from tests.processes import HOST, free_port, launch, stop

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quickstart-flask.md"


def _block_after(text: str, caption: str, lang: str) -> str:
    """The first ```lang block after the line that holds ``caption``."""
    start = text.index(caption)
    found = re.compile(rf"^```{lang}\n(.*?)^```$", re.M | re.S).search(text, start)
    assert found is not None, (caption, lang)
    return found.group(1)


def _post(port: int, path: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path)
        return conn.getresponse().status
    finally:
        conn.close()


def run_the_quickstart(python: str, tmp_path: Path, env: dict[str, str]) -> list[int]:
    """Write the page's files into ``tmp_path``, serve them with the page's gunicorn
    command under ``python``, send the page's six logins; their statuses."""
    text = PAGE.read_text(encoding="utf-8")
    (tmp_path / "ratelimits.yaml").write_text(_block_after(text, "`ratelimits.yaml`", "yaml"))
    (tmp_path / "app.py").write_text(_block_after(text, "`app.py`:", "python"))
    command = re.search(r"Run it with `(gunicorn [^`]+)`", text)
    assert command is not None and command.group(1) == "gunicorn -w 1 app:app"
    port = free_port()
    argv = [python, "-m", *command.group(1).split(), "-b", f"{HOST}:{port}"]
    server = launch(argv, env, tmp_path / "gunicorn.log", tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:  # until gunicorn answers (the first answer counts as the first login)
            try:
                first = _post(port, "/login")
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "gunicorn.log").read_text()
                assert time.monotonic() < deadline, "gunicorn did not answer within 30 s"
                time.sleep(0.1)
        statuses = [first] + [_post(port, "/login") for _ in range(5)]
    finally:
        stop(server)
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log and "decide failed" not in log, log
    return statuses


def test_the_flask_quickstart_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    statuses = run_the_quickstart(sys.executable, tmp_path, env)
    assert statuses == [200] * 5 + [429]  # "the sixth POST /login … gets 429"
