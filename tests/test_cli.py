from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

from ratemw.cli import main

HERE = Path(__file__).parent
EXAMPLE = HERE / "rules" / "good" / "example.yaml"


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_check_accepts_the_documented_example() -> None:
    code, text = run("check", str(EXAMPLE))
    assert code == 0
    assert "ok: 0 error(s), 0 warning(s) in 1 file(s)" in text


def test_check_reports_every_error_with_file_and_line_and_exits_1(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text(
        "version: 1\n"
        "rules:\n"
        "  - name: a\n"
        "    match: {path: /a}\n"
        "    limit: 0/minute\n"
        "  - name: a\n"
        "    match: {path: /b}\n"
        "    limt: 5/minute\n"
    )
    code, text = run("check", str(bad))
    assert code == 1
    lines = [line for line in text.splitlines() if ": error: " in line]
    assert len(lines) >= 3
    assert any(line.startswith(f"{bad}:5:") for line in lines)  # the zero rate
    assert any(line.startswith(f"{bad}:8:") and "did you mean 'limit'" in line for line in lines)
    assert text.splitlines()[-1].startswith("invalid:")


def test_check_missing_file(tmp_path: Path) -> None:
    code, text = run("check", str(tmp_path / "nope.yaml"))
    assert code == 1 and "cannot read file" in text


def test_explain_lists_applying_rules_with_keys_and_reasons() -> None:
    code, text = run(
        "explain",
        str(EXAMPLE),
        "--method",
        "GET",
        "--path",
        "/api/items",
        "--header",
        "X-Partner: yes",
        "--header",
        "X-API-Key: k1",
        "--ip",
        "198.51.100.4",
    )
    assert code == 0
    applies, _, others = text.partition("does not apply:")
    assert "1. partner-api:" in applies and "1000/second" in applies
    assert "api_key '" in applies and "k1'" not in applies  # the key is shown hashed
    assert "- api: overridden by partner-api" in others
    assert "- login: path /api/items does not match /login" in others
    assert "- reports: path /api/items does not match /api/reports/{id}" in others


def test_explain_method_and_host_reasons() -> None:
    _, text = run("explain", str(EXAMPLE), "--method", "GET", "--path", "/login")
    assert "- login: method GET is not one of POST" in text
    _, text = run(
        "explain",
        str(EXAMPLE),
        "--path",
        "/api/reports/7",
        "--host",
        "other.test",
        "--tenant",
        "acme",
    )
    assert "- reports: host other.test is not api.example.com" in text
    assert "1. api: 100/second token_bucket; key tenant 'acme'; enforce" in text


def test_console_script_is_installed() -> None:
    exe = shutil.which("ratemw", path=str(Path(sys.executable).parent))
    assert exe is not None
    proc = subprocess.run([exe, "check", str(EXAMPLE)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
