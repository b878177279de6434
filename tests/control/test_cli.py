from __future__ import annotations

import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from ratemw.cli import main
from ratemw.control.app import ENDPOINTS
from ratemw.control.auth import TokenTable, token_digest

DEADLINE_SECONDS = 60.0  # generous: a loaded 2-core machine starts Python slowly


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def _lines(stream: io.TextIOBase, into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def test_control_starts_and_serves_openapi(tmp_path: Path, db_url: str, dialect: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEMW_")}
    env["RATEMW_CONTROL_TOKENS"] = json.dumps(
        {token_digest("tok-v"): {"principal": "vera", "role": "viewer"}}
    )
    live = tmp_path / "live"
    live.mkdir()
    # SQLite: the embedded database, by a path relative to the working directory.
    served_db = "sqlite:///control.db" if dialect == "sqlite" else db_url
    command = [
        sys.executable, "-m", "ratemw.cli", "control", "--db", served_db,
        "--publish", live.as_uri(), "--host", "127.0.0.1", "--port", "0",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True)
    reader.start()
    seen: list[str] = []
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        url = None
        while url is None:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"ratemw control exited: {''.join(seen)}"
            seen.append(line)
            found = re.search(r"on (http://127\.0\.0\.1:\d+) ", line)
            url = found.group(1) if found else None
        doc = None
        with httpx.Client(base_url=url, timeout=5.0) as client:
            while doc is None:  # the port is bound before the server accepts: poll
                try:
                    response = client.get("/openapi.json")
                    doc = json.loads(response.text)
                except httpx.TransportError:
                    assert proc.poll() is None, "".join(seen)
                    assert time.monotonic() < deadline, "no /openapi.json before the deadline"
                    time.sleep(0.05)  # a poll interval, not synchronisation
            assert response.headers["content-type"] == "application/json"
            who = client.get("/v1/whoami", headers={"Authorization": "Bearer tok-v"})
            assert who.json() == {"principal": "vera", "role": "viewer"}
            assert client.get("/v1/whoami").status_code == 401
        served = {ep.path.replace(":int", "") for ep in ENDPOINTS}
        assert served | {"/openapi.json", "/healthz"} == set(doc["paths"])
        assert doc["info"]["title"] == "ratemw control"
        assert dialect != "sqlite" or (tmp_path / "control.db").is_file()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=DEADLINE_SECONDS)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            reader.join(timeout=DEADLINE_SECONDS)
            proc.stdout.close()
    assert proc.returncode == 0, "".join(seen)
    code, text = run("audit", "verify", "--db", db_url)
    assert code == 0 and text.startswith("ok: 1 audit entries")  # the 401 above


def test_control_refuses_a_bad_target_or_token_file(tmp_path: Path) -> None:
    code, text = run("control", "--publish", "ftp://x/y")
    assert code == 2 and "--publish" in text
    db = f"sqlite:///{tmp_path / 'c.db'}"
    code, text = run("control", "--db", db, "--tokens", str(tmp_path / "none.yaml"))
    assert code == 1 and "cannot read the tokens file" in text
    code, text = run("control", "--db", "mysql://x/y")
    assert code == 1 and "unsupported database URL" in text


def test_audit_verify_without_a_database(tmp_path: Path) -> None:
    code, text = run("audit", "verify", "--db", f"sqlite:///{tmp_path / 'nope.db'}")
    assert code == 1 and "no database" in text  # a runtime error (docs/api.md)


def test_control_token_prints_a_token_and_its_entry() -> None:
    code, text = run("control-token", "--principal", "alice", "--role", "approver")
    assert code == 0
    token = re.search(r"not stored\): (\S+)", text)
    assert token is not None
    entry = text.split("tokens file entry:\n", 1)[1]
    table = TokenTable.from_text(entry, "entry")
    assert table.authenticate(token.group(1)) is not None
    assert token.group(1) not in entry


def test_a_file_target_that_cannot_be_written_stops_the_service_before_it_serves(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    out = io.StringIO()
    code = main(
        ["control", "--db", f"sqlite:///{tmp_path}/c.db", "--port", "0",
         "--publish", f"file://{blocker}/rules"],
        out=out,
    )  # fmt: skip
    assert code == 1
    assert "--publish" in out.getvalue() and "cannot create" in out.getvalue()
    assert "ratemw control on" not in out.getvalue()  # it never served


def test_a_missing_file_target_directory_is_made_at_start(tmp_path: Path) -> None:
    from ratemw.control.cli import _file_target_problem

    folder = tmp_path / "etc" / "ratemw"
    assert _file_target_problem(f"file://{folder}") is None
    assert folder.is_dir()
    assert _file_target_problem(f"file://{tmp_path}/x/ratelimits.yaml") is None
    assert (tmp_path / "x").is_dir()
    assert _file_target_problem("consul://c:8500/k") is None  # not a file: not checked
