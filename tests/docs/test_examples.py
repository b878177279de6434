"""Every ```python block of the docs runs, each in its own interpreter, with a deadline.

A block runs in a fresh directory holding the README's ``ratelimits.yaml`` (also as
``rules.yaml``), against the session's real Redis when it names one. Blocks a page marks
``<!-- not-run: reason -->`` are only compiled, and so are blocks that name a host off
this machine. ``KNOWN_BROKEN`` lists the blocks of pages this suite does
not own that do not run as written yet (issue #16), each with the reason: they are
expected failures, reported as XPASS once their page is fixed, so the entry can go
(an entry whose block is gone matches nothing and does no harm).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.examples import ROOT, Example, all_examples, extract

TIMEOUT = 90.0  # seconds per block: imports of Django or FastAPI on a loaded 2-core machine
RULES = """\
version: 1
tiers: [free, pro]
rules:
  - name: login
    match: {methods: [POST], path: /login}
    identity: ip
    limit: 5/minute
  - name: search
    match: {path: "/search/**"}
    identity: user
    algorithm: sliding_window
    limit: {free: 10/second, pro: 200/second}
  - name: checkout
    match: {methods: [POST], path: /checkout}
    identity: user
    concurrency: 2
"""

#: (page, a line of the block) -> why the block does not run as written
KNOWN_BROKEN: dict[tuple[str, str], str] = {
}  # fmt: skip

EXAMPLES = all_examples()


def _known_broken(example: Example) -> str | None:
    for (page, line), reason in KNOWN_BROKEN.items():
        if example.page == page and line in example.code:
            return reason
    return None


def _params() -> list[object]:
    params: list[object] = []
    for ex in EXAMPLES:
        marks: list[pytest.MarkDecorator] = []
        reason = _known_broken(ex)
        if reason is not None:
            marks.append(pytest.mark.xfail(reason=reason, strict=False))
        params.append(pytest.param(ex, id=ex.id, marks=marks))
    return params


@pytest.mark.parametrize("example", _params())
def test_example_runs(example: Example, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if example.not_run is not None:  # marked in the page: it must still be Python
        compile(example.code, example.id, "exec")
        return
    redis_url = request.getfixturevalue("redis_url") if example.needs_redis else None
    code = example.runnable(redis_url)
    if example.foreign_hosts(code):  # names hosts off this machine: it must still be Python
        compile(code, example.id, "exec")
        return
    (tmp_path / "ratelimits.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore::DeprecationWarning"}
    if redis_url is not None:
        env["REDIS_URL"] = redis_url
    try:
        done = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"{example.id}: still running after {TIMEOUT:g} s")
    assert done.returncode == 0, f"{example.id} failed:\n{done.stderr[-3000:]}"


def test_extraction_and_markers() -> None:
    text = (
        "# T\n\n```python\nprint(1)\n```\n\n<!-- not-run: needs a real deployment -->\n\n"
        "```python\nimport nothing\n```\n\n```bash\necho no\n```\n    ```python\n    x\n    ```\n"
    )
    examples = extract(text, "t.md")
    assert [(e.line, e.code, e.not_run) for e in examples] == [
        (3, "print(1)\n", None),
        (9, "import nothing\n", "needs a real deployment"),
    ]


def test_only_loopback_hosts_run() -> None:
    ex = Example("t.md", 1, 'Limiter(redis_url="redis://localhost:6379/0")\n', None)
    assert ex.needs_redis
    code = ex.runnable("redis://127.0.0.1:41234/0")
    assert "41234" in code and ex.foreign_hosts(code) == []
    sentinel = "redis+sentinel://:pw@10.0.0.11:26379,10.0.0.12,[fd00::13]:26380/m/0"
    assert ex.foreign_hosts(sentinel) == ["10.0.0.11", "10.0.0.12", "[fd00::13]"]
    assert ex.foreign_hosts("consul://consul:8500/k?token=x") == ["consul"]
