"""The Django quickstart, as written: startproject, the page's rules file, the end of
settings.py, views.py and urls.py, then ``manage.py runserver`` and six logins (#16)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.docs.pages import DOCS, block_after, six_logins
from tests.processes import HOST, free_port

PAGE = DOCS / "quickstart-django.md"


def test_the_django_quickstart_runs_as_written(tmp_path: Path) -> None:
    text = PAGE.read_text(encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONWARNINGS": "ignore"}
    made = subprocess.run(
        [sys.executable, "-m", "django", "startproject", "mysite", "."], cwd=tmp_path,
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    (tmp_path / "ratelimits.yaml").write_text(block_after(text, "`ratelimits.yaml`", "yaml"))
    settings = tmp_path / "mysite" / "settings.py"
    end = block_after(text, "At the end of `mysite/settings.py`", "python")
    settings.write_text(settings.read_text() + "\n" + end)
    (tmp_path / "mysite" / "views.py").write_text(block_after(text, "`mysite/views.py`", "python"))
    urls = re.search(r"`(urlpatterns = \[.*?\])`", text, re.S)
    imports = re.findall(r"`(from [\w.]+ import \w+)`", text[text.index("mysite/urls.py") :])
    assert urls is not None and len(imports) >= 2
    (tmp_path / "mysite" / "urls.py").write_text(
        "\n".join(imports[:2]) + "\n" + " ".join(urls.group(1).split()) + "\n"
    )
    assert "\npython manage.py runserver\n" in text  # run below on a free port, one process
    port = free_port()
    argv = [sys.executable, "manage.py", "runserver", "--noreload", f"{HOST}:{port}"]
    statuses = six_logins(argv, env, tmp_path, port)
    assert statuses == [200] * 5 + [429]
