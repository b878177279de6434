from __future__ import annotations

import io
import os
import subprocess
import sys

from ratemw.demo import run_demo


def test_demo_prints_a_table_within_the_limits() -> None:
    out = io.StringIO()
    assert run_demo(seconds=0.5, out=out) == 0
    lines = out.getvalue().splitlines()
    header, rule = lines[1], lines[2]
    # Columns are separated by two spaces under a row of dashes.
    starts = [i for i, ch in enumerate(rule) if ch == "-" and (i == 0 or rule[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))

    def cells(line: str) -> list[str]:
        return [line[a:b].strip() for a, b in bounds]

    assert cells(header)[:6] == ["rule", "tier", "offered", "admitted", "rejected", "limit allows"]
    rows = {(c[0], c[1]): c for c in map(cells, lines[3:]) if c[2].isdigit()}
    assert ("login", "-") in rows and ("search", "pro") in rows
    for key, c in rows.items():
        offered, admitted, rejected = int(c[2]), int(c[3]), int(c[4])
        assert offered == admitted + rejected > 0, key
        if c[5].isdigit():
            assert admitted <= int(c[5]), key
    checkout = rows[("checkout", "-")]
    assert checkout[5] == "2 in flight"
    assert int(checkout[3]) == 2 * int(checkout[2]) // 3  # 3 at once, 2 slots
    assert int(rows[("deny list", "-")][3]) == 0  # the deny list admits nothing
    assert "search-new-limit" in out.getvalue()  # the shadow rule reports would-blocks


def test_the_built_in_demo_runs_clean() -> None:
    # Issue #16, bug 9: no warning about RATEMW_JWT_SECRET (nor anything else) on stderr,
    # in a clean environment: the demo needs no secret, no server and no extra.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    done = subprocess.run(
        [sys.executable, "-m", "ratemw", "demo", "--seconds", "0.3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "ratemw demo:" in done.stdout and "search" in done.stdout
