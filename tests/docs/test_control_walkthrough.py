"""docs/control-plane.md's curl session, run as written on a fresh database (issue #16):
only the port is changed, to a free one."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.docs.pages import DOCS, block_after
from tests.docs.test_examples import RULES
from tests.processes import free_port

PAGE = DOCS / "control-plane.md"


def test_the_curl_session_runs_as_written_on_a_fresh_database(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    script = block_after(text, "A complete session with curl on a fresh database", "sh")
    tokens_at = text.rindex("```yaml", 0, text.index("# tokens.yaml:"))
    (tmp_path / "tokens.yaml").write_text(block_after(text[tokens_at:], "```yaml", "yaml"))
    (tmp_path / "ratelimits.yaml").write_text(RULES)
    port = free_port()
    script = script.replace("http://127.0.0.1:8088", f"http://127.0.0.1:{port}")
    script = script.replace("ratemw control --tokens", f"ratemw control --port {port} --tokens")
    bin_dir = str(Path(sys.executable).parent)  # the venv's ratemw
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}"}
    assert shutil.which("curl", path=env["PATH"]), "curl is needed (.ci/system-packages)"
    done = subprocess.run(
        ["bash", "-c", "set -m\n" + script], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, (out, done.stderr)
    assert '"id":1' in out.replace(" ", "") and '"id":2' in out.replace(" ", ""), out
    assert "3/minute" in out  # the diff (and version 2) name the change
    assert re.search(r"ok: \d+ audit entries", out), out
    published = (tmp_path / "published" / "ratelimits.yaml").read_text()
    assert "limit: 5/minute" in published  # the rollback put version 1 back
    assert "3/minute" not in published
