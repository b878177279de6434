"""Recording: bounds and rotation, nothing raw in the file, sampling by identity, gaps,
concurrency finish times, the flush thread."""

from __future__ import annotations

import gzip
import ipaddress
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.ops.record import FORMAT, Recorder
from ratemw.replay.reader import files_of, read_recording
from ratemw.testing import ManualClock
from tests.replay.helpers import HASH_KEY, all_bytes, client, record, rules


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rotation_caps_every_file_and_gzips_the_rotated_ones(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    cap = 8192
    clock = ManualClock()
    recorder = Recorder(path, max_bytes=cap, keep=2, flush_seconds=0, hash_key=HASH_KEY)
    limiter = Limiter(rules(), clock=clock, record=recorder)
    try:
        for i in range(3000):
            limiter.decide(client(i % 50))
            clock.advance(0.01)
            if i % 100 == 99:
                recorder.flush()
                files = sorted(p.name for p in tmp_path.iterdir())
                assert len(files) <= 3, files  # the live file and `keep` rotated ones
                assert path.stat().st_size <= cap
    finally:
        limiter.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "rec.jsonl", "rec.jsonl.1.gz", "rec.jsonl.2.gz",
    ]  # fmt: skip
    for n in (1, 2):
        text = gzip.decompress((tmp_path / f"rec.jsonl.{n}.gz").read_bytes())
        assert len(text) <= cap
        assert json.loads(text.splitlines()[0])["format"] == FORMAT  # each reads on its own
    recording = read_recording(files_of(path))
    times = [a.t for a in recording.arrivals]
    assert times == sorted(times) and recording.bad_lines == 0 and recording.gaps == 0
    # The oldest arrivals went with the dropped file; the newest are all there.
    assert 0 < len(times) < 3000 and times[-1] == pytest.approx(1000 + 2999 * 0.01)


def test_nothing_raw_reaches_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    secrets = {
        "api_key": "sk_live_51HyperSecretKeyValue",
        "token": "Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig",
        "user": "alice@example.com",
        "tenant": "acme-corp-tenant",
    }
    data = rules(
        extra=[
            {"name": "keys", "match": {"path": "/api/**"}, "identity": "api_key",
             "limit": "5/hour"},
            {"name": "auth", "match": {"path": "/api/**"}, "identity": "header:authorization",
             "limit": "5/hour"},
            {"name": "users", "match": {"path": "/api/**"}, "identity": "user", "limit": "5/hour"},
            {"name": "tenants", "match": {"path": "/api/**"}, "identity": "tenant",
             "limit": "5/hour"},
        ]
    )  # fmt: skip
    addresses = ["203.0.113.77", "2001:db8:abcd:12::1", "198.51.100.23"]
    requests = []
    for address in addresses:
        headers = {"x-forwarded-for": address, "authorization": secrets["token"]}
        info = RequestInfo(
            path="/api/items", peer="127.0.0.1", headers=headers, api_key=secrets["api_key"],
            user=secrets["user"], tenant=secrets["tenant"],
        )  # fmt: skip
        requests += [(1.0, info)] * 3
    statuses = record(path, data, requests)
    assert 429 in statuses  # the rules ran
    blob = all_bytes(path).decode()
    forms = [*secrets.values(), "sk_live", "eyJhbGci", "alice", "127.0.0.1"]
    for address in addresses:
        ip = ipaddress.ip_address(address)
        forms += [address, str(ip), ip.exploded]
    forms += ["2001:db8:abcd:12::", "2001:db8:abcd:12::/64"]
    for form in forms:
        assert form not in blob, form
    arrival = read_recording([path]).arrivals[0]
    assert {k for k, _ in arrival.ids} == {
        "ip", "api_key", "header:authorization", "user", "tenant",
    }  # fmt: skip


def test_sampling_keeps_every_request_of_a_sampled_identity(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    requests = [(0.5, client(n)) for _ in range(5) for n in range(200)]
    record(path, rules("1000/hour"), requests, sample=0.25)
    recording = read_recording([path])
    assert recording.sample == 0.25 and recording.by == "ip"
    per_identity = Counter(dict(a.ids)["ip"] for a in recording.arrivals)
    assert set(per_identity.values()) == {5}  # whole identities, never part of one
    assert 25 <= len(per_identity) <= 75  # a quarter of 200, give or take the hash
    # Stable: the same key samples the same identities.
    again = tmp_path / "again.jsonl"
    record(again, rules("1000/hour"), requests, sample=0.25)
    assert Counter(dict(a.ids)["ip"] for a in read_recording([again]).arrivals) == per_identity


def test_a_full_buffer_is_recorded_as_a_gap(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    record(path, rules(), [(1.0, client(1))] * 25, buffer_size=10)
    assert any("gap" in line for line in _lines(path))
    recording = read_recording([path])
    assert recording.gaps >= 1 and len(recording.arrivals) == 10


def test_the_flush_thread_writes_without_being_asked(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    limiter = Limiter(rules(), record=Recorder(path, flush_seconds=0.05, hash_key=HASH_KEY))
    try:
        for _ in range(3):
            limiter.decide(client(9))
        deadline = time.monotonic() + 20.0
        while not (path.exists() and len(path.read_text().splitlines()) >= 5):
            assert time.monotonic() < deadline, "the recorder's thread never wrote"
            time.sleep(0.02)
    finally:
        limiter.close()
    statuses = [line.get("s") for line in _lines(path) if "s" in line]
    assert statuses == [200, 200, 200]


def test_a_concurrency_rule_records_when_each_request_finished(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    data = {"rules": [{"name": "slots", "match": {"path": "/up"}, "concurrency": 1}]}
    clock = ManualClock()
    limiter = Limiter(data, clock=clock, record=Recorder(path, flush_seconds=0))
    first = limiter.decide(RequestInfo(path="/up", peer="192.0.2.1"))
    clock.advance(2.0)
    second = limiter.decide(RequestInfo(path="/up", peer="192.0.2.1"))
    limiter.recorder.flush()  # the first is still running: it waits for its finish
    clock.advance(3.0)
    first.release()
    limiter.close()
    assert (first.status, second.status) == (200, 429)
    arrivals = read_recording([path]).arrivals
    assert [(a.t, a.status, a.finish) for a in arrivals] == [
        (1000.0, 200, 1005.0),
        (1002.0, 429, None),
    ]


def test_bad_settings_are_refused() -> None:
    for bad in ({"sample": 0}, {"sample": 1.5}, {"max_bytes": 10}, {"buffer_size": 0},
                {"by": "ip; rm -rf"}, {"keep": -1}):  # fmt: skip
        with pytest.raises(ValueError, match="record"):
            Recorder("x.jsonl", **bad)


def test_an_async_limiter_records_too(tmp_path: Path) -> None:
    import asyncio

    from ratemw import AsyncLimiter

    path = tmp_path / "rec.jsonl"

    async def main() -> list[int]:
        clock = ManualClock()
        limiter = AsyncLimiter(rules("2/hour"), clock=clock, record=Recorder(path))
        statuses = []
        for _ in range(3):
            statuses.append((await limiter.decide(client(4))).status)
            clock.advance(1.0)
        await limiter.aclose()  # writes what is left
        return statuses

    assert asyncio.run(main()) == [200, 200, 429]
    arrivals = read_recording([path]).arrivals
    assert [(a.t, a.status) for a in arrivals] == [(1000.0, 200), (1001.0, 200), (1002.0, 429)]


def test_a_forked_worker_records_to_its_own_file(tmp_path: Path) -> None:
    import os

    template = str(tmp_path / "rec-{pid}.jsonl")
    limiter = Limiter(rules(), record=Recorder(template, flush_seconds=0.05))
    limiter.decide(client(1))  # buffered in the parent: never written by the child
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker after a preloading master
        code = 1
        try:
            for _ in range(3):
                limiter.decide(client(2))
            limiter.close()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    limiter.close()
    child = read_recording([tmp_path / f"rec-{pid}.jsonl"])
    parent = read_recording([tmp_path / f"rec-{os.getpid()}.jsonl"])
    assert len(child.arrivals) == 3 and child.pids == {pid}
    assert len(parent.arrivals) == 1 and parent.pids == {os.getpid()}
