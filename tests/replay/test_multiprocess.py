"""Recording under real gunicorn (2 sync workers) with a global limit in a real Redis,
then replaying every worker's files merged (``rec-{pid}.jsonl``).

One rule, ``search``: 8/hour per API key, global (strict: its lease cap is under one
token, so Redis decides every request, exactly as the replay's one bucket does).
Requests go one at a time, so the order Redis saw is the order of the recorded times.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratemw.cli import main
from ratemw.replay import preview
from ratemw.replay.reader import files_of, read_recording
from tests.processes import free_port, launch, stop
from tests.replay.helpers import ruleset

ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
START_DEADLINE = 30.0  # a loaded 2-core machine starts 2 Python workers slowly
FLUSH_DEADLINE = 30.0
SETTLE_SECONDS = 0.5  # five flush intervals
KEYS, PER_KEY = 24, 10
MAX_BYTES, KEEP = 4096, 12  # small enough to rotate several times, none dropped
SAMPLE = 0.5
HASH_KEY = "replay-mp-test-key"
TOKEN = "Bearer tok_live_9f8e7d6c5b4a39281706"


def _rules(limit: str) -> dict[str, Any]:
    return {
        "identity": {"trusted_proxies": ["127.0.0.1/32"]},
        "rules": [
            {"name": "search", "match": {"path": "/search"}, "identity": "api_key",
             "limit": limit},
        ],
    }  # fmt: skip


def _api_key(n: int) -> str:
    return f"sk_live_{n:02d}_a1b2c3d4e5f6"


def _address(n: int) -> str:
    return f"198.51.100.{n + 1}"


@dataclass
class Server:
    url: str
    log: Path
    record: Path  # the recorder's path, with {pid}


def _get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    # A new connection each time: whichever worker accepts it answers.
    sent = {"Connection": "close", "Host": "api.example", **(headers or {})}
    return httpx.get(url, headers=sent, timeout=10.0)


def _pid(url: str) -> int | None:
    try:
        return int(_get(f"{url}/health").headers["X-Worker-Pid"])
    except (httpx.HTTPError, KeyError):
        return None


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[Server]:
    port = free_port()
    record = tmp_path / "rec" / "rec-{pid}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    env.update({
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "REPLAY_RULES": json.dumps(_rules("8/hour")),
        "REPLAY_REDIS_URL": redis_url,
        "REPLAY_HASH_KEY": HASH_KEY,
        "REPLAY_RECORD": str(record),
        "REPLAY_SAMPLE": str(SAMPLE),
        "REPLAY_MAX_BYTES": str(MAX_BYTES),
        "REPLAY_KEEP": str(KEEP),
    })  # fmt: skip
    env.pop("WEB_CONCURRENCY", None)
    command = [
        sys.executable, "-m", "gunicorn", "tests.replay.mp_record_app:app",
        "-b", f"{HOST}:{port}", "-w", "2", "-k", "sync",
        "--graceful-timeout", "5", "--log-level", "warning",
    ]  # fmt: skip
    log = tmp_path / "gunicorn.log"
    process = launch(command, env, log, ROOT)
    try:
        url = f"http://{HOST}:{port}"
        workers: set[int] = set()
        deadline = time.monotonic() + START_DEADLINE
        # Both workers up before the traffic, so that both record some of it.
        while len(workers) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn: workers {workers} answered:\n{_tail(log)}")
            with ThreadPoolExecutor(max_workers=4) as pool:
                workers.update(p for p in pool.map(_pid, [url] * 4) if p is not None)
        yield Server(url, log, record)
    finally:
        stop(process)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def _check_caps(record: Path) -> int:
    """Every file within the cap (rotated ones decompressed), at most KEEP rotated per
    process; returns how many rotated files there are."""
    rotated = Counter[str]()
    for file in record.parent.iterdir():
        if file.suffix == ".gz":
            assert len(gzip.decompress(file.read_bytes())) <= MAX_BYTES, file.name
            rotated[file.name.split(".")[0]] += 1
        else:
            assert file.stat().st_size <= MAX_BYTES, file.name
    assert all(n <= KEEP for n in rotated.values()), rotated
    return sum(rotated.values())


def _searches(record: Path) -> int:
    try:
        recording = read_recording(files_of(record))
    except Exception:  # no file yet
        return 0
    return sum(a.path == "/search" for a in recording.arrivals)


def test_workers_files_merge_into_one_replay(server: Server) -> None:
    statuses: dict[int, list[int]] = {}
    served_by: set[int] = set()
    for _ in range(PER_KEY):
        for n in range(KEYS):
            headers = {
                "X-API-Key": _api_key(n),
                "X-Forwarded-For": _address(n),
                "Authorization": TOKEN,
            }
            response = _get(f"{server.url}/search", headers)
            statuses.setdefault(n, []).append(response.status_code)
            served_by.add(int(response.headers["X-Worker-Pid"]))
        _check_caps(server.record)
    # The limit was global: 8 per key, whichever worker served (one bucket in Redis).
    assert all(codes == [200] * 8 + [429] * 2 for codes in statuses.values()), statuses
    assert len(served_by) == 2, f"one worker served everything: {served_by}"

    # Every sampled arrival written (the recorders flush every 0.1 s): poll, bounded,
    # until whole keys' worth are there and the count holds over several flushes.
    deadline = time.monotonic() + FLUSH_DEADLINE
    last = -1
    while True:
        found = _searches(server.record)
        if found == last and found > 0 and found % PER_KEY == 0:
            break
        assert time.monotonic() < deadline, f"{found} searches recorded:\n{_tail(server.log)}"
        last = found
        time.sleep(SETTLE_SECONDS)
    assert _check_caps(server.record) >= 2  # the cap made them rotate

    # Nothing raw: neither addresses, API keys, the bearer token nor the proxy's address.
    raw = b"".join(
        gzip.decompress(f.read_bytes()) if f.suffix == ".gz" else f.read_bytes()
        for f in server.record.parent.iterdir()
    )
    for secret in [TOKEN, "tok_live", "sk_live", "198.51.100.", "127.0.0.1", HASH_KEY]:
        assert secret.encode() not in raw, secret

    baseline, candidate = ruleset(_rules("8/hour")), ruleset(_rules("4/hour"))
    result = preview(candidate, server.record, baseline)
    report = result.report
    rec = report["recording"]
    assert rec["processes"] == 2 and rec["global_limits"] is True, rec
    assert len(rec["files"]) >= 4 and rec["gaps"] == 0 and rec["bad_lines"] == 0, rec
    check = report["self_check"]
    assert check["ok"] and check["disagreements"] == 0 and check["compared"] > 0, check

    # Halving: each sampled key's 5th to 8th requests flip (10 each: 8 -> 4 admitted).
    row = next(r for r in report["rules"] if r["rule"] == "search")
    sampled = row["matched_before"] // PER_KEY
    assert row["matched_before"] == sampled * PER_KEY and 0 < sampled < KEYS
    flips = report["flips"]
    assert flips["allowed_to_rejected"] == 4 * sampled and flips["rejected_to_allowed"] == 0
    assert flips["scaled_total"] == 4 * sampled / SAMPLE
    # The whole traffic's flips (24 keys x 4) lie within the stated error (2 s.e.).
    error = flips["scaled_error"]
    assert error > 0 and abs(flips["scaled_total"] - KEYS * 4) <= 2 * error, flips
    assert any("sampling error" in note for note in report["notes"])

    # The command reads the same merged files.
    out = io.StringIO()
    base_file, cand_file = (server.record.parent.parent / name for name in ("b.json", "c.json"))
    base_file.write_text(json.dumps(_rules("8/hour")))
    cand_file.write_text(json.dumps(_rules("4/hour")))
    code = main(
        ["replay", "--rules", str(cand_file), "--baseline", str(base_file),
         "--traffic", str(server.record), "--json"],
        out=out,
    )  # fmt: skip
    assert code == 0 and json.loads(out.getvalue())["flips"] == flips
    text = io.StringIO()
    argv = ["replay", "--rules", str(cand_file), "--baseline", str(base_file),
            "--traffic", str(server.record)]  # fmt: skip
    assert main(argv, out=text) == 0
    assert f"scaled {flips['scaled_total']:g} ± {error:g}" in text.getvalue()
