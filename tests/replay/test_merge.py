"""Several processes' files, merged: ``{pid}`` names them all; one host's arrivals keep
their monotonic times, another host's fall in by wall time."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from ratemw import Limiter
from ratemw.ops.record import Recorder
from ratemw.replay.reader import files_of, read_recording
from ratemw.testing import ManualClock
from tests.replay.helpers import HASH_KEY, client, rules

WALL = 1_700_000_000.0


def _record(path: Path, start: float, wall_at_start: float, clients: range) -> None:
    """One "process": a limiter on its own clock; a request every second per client."""
    clock = ManualClock(start=start, wall_offset=wall_at_start - start)
    recorder = Recorder(path, hash_key=HASH_KEY, flush_seconds=0)
    limiter = Limiter(rules("1000/hour"), clock=clock, record=recorder)
    try:
        for _ in range(5):
            for n in clients:
                limiter.decide(client(n))
            clock.advance(1.0)
    finally:
        limiter.close()


def test_pid_stands_for_every_process_and_its_rotated_files(tmp_path: Path) -> None:
    for name in ("rec-7.jsonl", "rec-11.jsonl", "rec-x.jsonl", "other-7.jsonl"):
        (tmp_path / name).write_text("{}\n")
    with gzip.open(tmp_path / "rec-7.jsonl.1.gz", "wb") as f:
        f.write(b"{}\n")
    (tmp_path / "rec-7.jsonl.old.gz").write_text("")
    # A process whose live file is gone still has its rotated one read.
    with gzip.open(tmp_path / "rec-3.jsonl.2.gz", "wb") as f:
        f.write(b"{}\n")
    found = [p.name for p in files_of(tmp_path / "rec-{pid}.jsonl")]
    assert found == ["rec-3.jsonl.2.gz", "rec-7.jsonl.1.gz", "rec-7.jsonl", "rec-11.jsonl"]
    assert files_of(tmp_path / "none-{pid}.jsonl") == []


def test_one_hosts_processes_keep_their_monotonic_times(tmp_path: Path) -> None:
    # Same clock: process b starts 0.25 s after a, on the same monotonic and wall time.
    _record(tmp_path / "rec-1.jsonl", 1000.0, WALL, range(0, 3))
    _record(tmp_path / "rec-2.jsonl", 1000.25, WALL + 0.25, range(3, 6))
    merged = read_recording(files_of(tmp_path / "rec-{pid}.jsonl"))
    times = [a.t for a in merged.arrivals]
    assert times == sorted(times) and len(times) == 30
    # Unshifted: exactly the recorded monotonic times, interleaved.
    assert set(times) == {1000.0 + s for s in range(5)} | {1000.25 + s for s in range(5)}
    assert merged.pids and len(merged.files) == 2


def test_another_hosts_file_falls_in_by_wall_time(tmp_path: Path) -> None:
    _record(tmp_path / "rec-1.jsonl", 1000.0, WALL, range(0, 3))
    # Another host: its monotonic clock counts from elsewhere; it starts 0.5 s later.
    _record(tmp_path / "rec-2.jsonl", 86_400.0, WALL + 0.5, range(3, 6))
    merged = read_recording(files_of(tmp_path / "rec-{pid}.jsonl"))
    arrivals = merged.arrivals
    walls = [a.wall for a in arrivals]
    assert walls == sorted(walls) and len(arrivals) == 30
    # Its times moved onto the first file's clock: wall minus t is one offset for all.
    assert {round(a.wall - a.t, 3) for a in arrivals} == {round(WALL - 1000.0, 3)}
    late = [a.t for a in arrivals if abs(a.wall - (WALL + 0.5)) < 1e-3]
    assert late == [pytest.approx(1000.5, abs=1e-6)] * 3


def test_one_file_reads_as_before(tmp_path: Path) -> None:
    _record(tmp_path / "rec.jsonl", 86_400.0, WALL + 0.5, range(3))
    copy = tmp_path / "copy-{pid}.jsonl"
    shutil.copy(tmp_path / "rec.jsonl", tmp_path / "copy-5.jsonl")
    alone = read_recording(files_of(tmp_path / "rec.jsonl")).arrivals
    assert [a.t for a in alone] == [86_400.0 + s for s in range(5) for _ in range(3)]
    assert read_recording(files_of(copy)).arrivals == alone


def test_a_process_rotated_files_share_its_clock(tmp_path: Path) -> None:
    _record(tmp_path / "whole.jsonl", 1000.0, WALL, range(3))
    header, *lines = (tmp_path / "whole.jsonl").read_text().splitlines()
    half = len(lines) // 2
    with gzip.open(tmp_path / "rec-1.jsonl.1.gz", "wt") as f:
        f.write("\n".join([header, *lines[:half]]) + "\n")
    # The wall clock stepped 2 s between the files (NTP): the times stay the process's.
    stepped = [json.dumps({**json.loads(x), "w": json.loads(x)["w"] + 2.0}) for x in lines[half:]]
    (tmp_path / "rec-1.jsonl").write_text("\n".join([header, *stepped]) + "\n")
    expected = [a.t for a in read_recording([tmp_path / "whole.jsonl"]).arrivals]
    merged = read_recording(files_of(tmp_path / "rec-{pid}.jsonl"))
    assert merged.files == ["rec-1.jsonl.1.gz", "rec-1.jsonl"]
    assert [a.t for a in merged.arrivals] == expected
