"""One exit-status convention for every ``ratemw`` command (issue #16, bug 8; docs/api.md,
"Command line"): 0 success, 1 a runtime error (an unreachable server, invalid rules, an
unreadable file), 2 a usage error (arguments that cannot be right)."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest

from ratemw.cli import main
from tests.integrations.store_down import dead_redis_url

GOOD = "version: 1\nrules:\n  - {name: api, match: {path: /api}, limit: 10/minute}\n"
BAD = "version: 1\nrules:\n  - {name: api, match: {path: /api}, limit: 0/minute}\n"

OPERATIONS = [
    ["top"],
    ["top", "--json"],
    ["ban", "list"],
    ["ban", "add", "--rule", "login", "ip:203.0.113.7"],
    ["ban", "remove", "--rule", "login", "ip:203.0.113.7"],
    ["brownout", "set", "--factor", "0.5", "--for", "1m"],
    ["brownout", "clear"],
    ["brownout", "show"],
]


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


@pytest.mark.parametrize("command", OPERATIONS, ids=" ".join)
def test_operations_commands_exit_1_when_redis_is_unreachable(command: list[str]) -> None:
    url = dead_redis_url()  # a closed loopback port: refused at once
    code, text = run(*command, "--redis", url)
    assert code == 1, text
    assert text.startswith(f"error: Redis at {url}: "), text


@pytest.mark.parametrize(
    "command",
    [
        ["ban", "add", "--rule", "login", "nonsense"],
        ["brownout", "set", "--factor", "2", "--for", "1m"],
        ["brownout", "set", "--factor", "0.5", "--for", "forever"],
    ],
    ids=" ".join,
)
def test_operations_commands_exit_2_on_arguments_that_cannot_be_right(command: list[str]) -> None:
    code, text = run(*command, "--redis", dead_redis_url())
    assert code == 2 and text.startswith("error: "), text


def test_a_missing_argument_is_argparses_usage_error_2() -> None:
    for argv in (["top"], ["explain", "rules.yaml"], ["nosuchcommand"]):
        with pytest.raises(SystemExit) as exited:
            main(argv, out=io.StringIO())
        assert exited.value.code == 2, argv


def test_rules_commands(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(BAD)
    missing = str(tmp_path / "missing.yaml")
    assert run("check", str(good))[0] == 0
    assert run("check", str(bad))[0] == 1
    assert run("check", missing)[0] == 1
    assert run("explain", str(good), "--path", "/api")[0] == 0
    assert run("explain", str(bad), "--path", "/api")[0] == 1
    assert run("explain", missing, "--path", "/api")[0] == 1
    code, text = run("explain", str(good), "--path", "/api", "--header", "no-colon")
    assert code == 2 and "NAME:VALUE" in text
    assert run("demo", "--seconds", "0.1", "--rules", str(bad))[0] == 1
    assert run("diff", str(good), str(good))[0] == 0
    assert run("diff", str(good), str(bad))[0] == 1
    # --exit-code makes 1 "they differ", so trouble is 2 there, as for diff(1)
    assert run("diff", "--exit-code", str(good), str(bad))[0] == 2


def test_live_rules_commands_exit_1_when_the_source_is_unreachable(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    source = f"{dead_redis_url()}?key=ratemw:rules"
    code, text = run("diff", str(good), source)
    assert code == 1, text
    assert run("diff", "--exit-code", str(good), source)[0] == 2
    code, text = run("publish", str(good), "--to", source)
    assert code == 1 and text.startswith("failed: "), text
    assert run("publish", str(tmp_path / "missing.yaml"), "--to", source)[0] == 1


def test_control_commands(tmp_path: Path) -> None:
    code, text = run("audit", "verify", "--db", f"sqlite:///{tmp_path / 'none.db'}")
    assert code == 1 and "no database" in text
    code, text = run("control", "--publish", "ftp://example.com/rules")
    assert code == 2 and "--publish" in text


def test_the_console_script_returns_the_status() -> None:
    # the process's own exit status, as a shell sees it
    done = subprocess.run(
        [sys.executable, "-m", "ratemw", "brownout", "show", "--redis", dead_redis_url()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done.stdout + done.stderr
