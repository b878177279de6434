"""The Flask quickstart, as written: its rules file and app.py from the page, served by
gunicorn with the page's command, and the page's curl loop's answers (issue #16)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tests.docs.pages import DOCS, block_after, six_logins
from tests.processes import HOST, free_port

PAGE = DOCS / "quickstart-flask.md"


def run_the_quickstart(python: str, tmp_path: Path, env: dict[str, str]) -> list[int]:
    """Write the page's files into ``tmp_path``, serve them with the page's gunicorn
    command under ``python``, send the page's six logins; their statuses."""
    text = PAGE.read_text(encoding="utf-8")
    (tmp_path / "ratelimits.yaml").write_text(block_after(text, "`ratelimits.yaml`", "yaml"))
    (tmp_path / "app.py").write_text(block_after(text, "`app.py`:", "python"))
    command = re.search(r"Run it with `(gunicorn [^`]+)`", text)
    assert command is not None and command.group(1) == "gunicorn -w 1 app:app"
    port = free_port()
    argv = [python, "-m", *command.group(1).split(), "-b", f"{HOST}:{port}"]
    return six_logins(argv, env, tmp_path, port)


def test_the_flask_quickstart_runs_as_written(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    statuses = run_the_quickstart(sys.executable, tmp_path, env)
    assert statuses == [200] * 5 + [429]  # "the sixth POST /login … gets 429"
