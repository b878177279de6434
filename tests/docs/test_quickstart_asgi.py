"""The Starlette and FastAPI quickstarts, as written: each page's rules file and app.py,
served by the page's ``uvicorn app:app``, and six logins (issue #16)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.docs.pages import DOCS, block_after, six_logins
from tests.processes import HOST, free_port


@pytest.mark.parametrize("page", ["quickstart-starlette.md", "quickstart-fastapi.md"])
def test_the_quickstart_runs_as_written(page: str, tmp_path: Path) -> None:
    text = (DOCS / page).read_text(encoding="utf-8")
    (tmp_path / "ratelimits.yaml").write_text(block_after(text, "```yaml", "yaml"))
    (tmp_path / "app.py").write_text(block_after(text, "```python", "python"))
    assert "\nuvicorn app:app\n" in text  # the page's command, run below on a free port
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", HOST, "--port", str(port)]
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    statuses = six_logins(argv, env, tmp_path, port)
    assert statuses == [200] * 5 + [429]  # "the sixth login within a minute gets 429"
