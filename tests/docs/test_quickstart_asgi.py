"""The Starlette and FastAPI quickstarts, as written: each page's rules file and app.py,
served by the page's ``uvicorn app:app``, and six logins (issue #16)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import pytest

from tests.docs.test_quickstart_flask import _post
from tests.processes import HOST, free_port, launch, stop

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _first_block(text: str, lang: str) -> str:
    found = re.compile(rf"^```{lang}\n(.*?)^```$", re.M | re.S).search(text)
    assert found is not None, lang
    return found.group(1)


@pytest.mark.parametrize("page", ["quickstart-starlette.md", "quickstart-fastapi.md"])
def test_the_quickstart_runs_as_written(page: str, tmp_path: Path) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    (tmp_path / "ratelimits.yaml").write_text(_first_block(text, "yaml"))
    (tmp_path / "app.py").write_text(_first_block(text, "python"))
    assert "\nuvicorn app:app\n" in text  # the page's command, run below on a free port
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    server = launch(argv, env, tmp_path / "uvicorn.log", tmp_path)
    try:
        deadline = time.monotonic() + 30
        while True:  # until uvicorn answers (the first answer counts as the first login)
            try:
                first = _post(port, "/login")
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "uvicorn.log").read_text()
                assert time.monotonic() < deadline, "uvicorn did not answer within 30 s"
                time.sleep(0.1)
        statuses = [first] + [_post(port, "/login") for _ in range(5)]
    finally:
        stop(server)
    assert statuses == [200] * 5 + [429]  # "the sixth login within a minute gets 429"
    log = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in log and "decide failed" not in log, log
