"""Replay: a known answer from real HTTP traffic, determinism, and each refusal."""

from __future__ import annotations

import http.client
import json
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.ops.record import Recorder
from ratemw.replay import preview
from ratemw.replay.reader import files_of, read_recording
from ratemw.testing import ManualClock
from ratemw.wsgi import RateLimitMiddleware
from tests.replay.helpers import HASH_KEY, client, record, rules, ruleset


def _rules(api_limit: str) -> dict[str, Any]:
    return rules(
        api_limit,
        extra=[
            {"name": "search", "match": {"path": "/search"}, "identity": "api_key",
             "limit": "6/hour"},
            {"name": "admin", "match": {"path": "/admin/**"}, "limit": "1/hour"},
        ],
    )  # fmt: skip


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def _app(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


@pytest.fixture
def recording_server(tmp_path: Path) -> Iterator[tuple[WSGIServer, Limiter, Path]]:
    """A real WSGI server on a free loopback port, limited by a recording limiter."""
    path = tmp_path / "live.jsonl"
    limiter = Limiter(_rules("8/hour"), record=Recorder(path, flush_seconds=0.2, hash_key=HASH_KEY))
    server = make_server(
        "127.0.0.1", 0, RateLimitMiddleware(_app, limiter=limiter), handler_class=_Quiet
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server, limiter, path
    finally:
        server.shutdown()
        thread.join(timeout=30)
        server.server_close()
        limiter.close()


def _traffic() -> list[tuple[str, dict[str, str]]]:
    out = []
    for round_ in range(10):
        for n in range(5):
            out.append(("/api/items", {"X-Forwarded-For": f"198.51.100.{n + 1}"}))
        if round_ < 8:
            for k in range(3):
                headers = {"X-Forwarded-For": "203.0.113.9", "X-API-Key": f"key-{k}-secret"}
                out.append(("/search", headers))
    return out


def test_halving_a_limit_flips_what_a_direct_run_of_the_candidate_would(
    recording_server: tuple[WSGIServer, Limiter, Path], tmp_path: Path
) -> None:
    server, limiter, path = recording_server
    traffic = _traffic()
    live = []
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=30)
    for target, headers in traffic:
        conn.request("GET", target, headers=headers)
        response = conn.getresponse()
        response.read()
        live.append(response.status)
    conn.close()
    limiter.close()  # writes what is left
    assert Counter(live) == {200: 40 + 18, 429: 10 + 6}

    candidate = ruleset(_rules("4/hour"))
    result = preview(candidate, path, ruleset(_rules("8/hour")))
    report = result.report
    assert report["self_check"]["ok"], report["self_check"]
    assert report["self_check"]["disagreements"] == 0

    # The candidate decided directly, on the same requests at the recorded times.
    times = [a.t for a in read_recording(files_of(path)).arrivals]
    assert len(times) == len(traffic)
    clock = ManualClock(start=times[0])
    direct = Limiter(_rules("4/hour"), clock=clock)
    expected: Counter[str] = Counter()
    per_identity: Counter[str] = Counter()
    digests = Recorder(path, hash_key=HASH_KEY)
    digests.bind_key(None)
    for t, (target, headers), status in zip(times, traffic, live, strict=True):
        clock.set(t)
        lower = {k.lower(): v for k, v in headers.items()}
        info = RequestInfo(path=target, peer="127.0.0.1", headers=lower)
        after = direct.decide(info).status
        if (status < 300) != (after < 300):
            expected["allowed_to_rejected" if status < 300 else "rejected_to_allowed"] += 1
            per_identity[f"ip:{digests.digest('ip', lower['x-forwarded-for'])}"] += 1
    direct.close()

    flips = report["flips"]
    assert expected == {"allowed_to_rejected": 20}  # 4 more rejections for each of 5
    assert flips["allowed_to_rejected"] == expected["allowed_to_rejected"]
    assert flips["rejected_to_allowed"] == expected["rejected_to_allowed"]
    by_rule = [(r["rule"], r["tier"], r["allowed_to_rejected"]) for r in report["rules"]]
    assert by_rule == [("api", None, 20), ("search", None, 0)]
    assert report["rules"][0]["share_allowed_to_rejected"] == pytest.approx(20 / 50)
    assert {i["identity"]: i["flips"] for i in report["identities"]} == per_identity
    assert report["never_matched"] == ["admin"]
    assert report["before"] == {"admitted": 58, "rejected": 16}
    assert report["after"] == {"admitted": 38, "rejected": 36}


def test_the_same_input_gives_the_same_report_and_plot(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    requests = [(0.02 * (i % 7), client(i % 9)) for i in range(400)]
    record(path, rules("20/minute"), requests)
    outs = []
    for _ in range(2):
        result = preview(ruleset(rules("10/minute")), path, ruleset(rules("20/minute")))
        outs.append((json.dumps(result.report, sort_keys=True), result.plot()))
    assert outs[0] == outs[1]
    assert json.loads(outs[0][0])["flips"]["total"] > 0


def _refusal(path: Path, baseline: dict[str, Any], **options: Any) -> str:
    result = preview(ruleset(rules("1/hour")), path, ruleset(baseline), **options)
    assert not result.ok
    assert "before" not in result.report and "flips" not in result.report
    return " | ".join(result.report["self_check"]["reasons"])


def test_a_baseline_that_was_not_live_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    record(path, rules("8/hour"), [(1.0, client(1))] * 5)
    assert "is not the rules live when recorded" in _refusal(path, rules("9/hour"))


def test_a_rules_change_mid_recording_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    clock = ManualClock()
    limiter = Limiter(rules("8/hour"), clock=clock, record=Recorder(path, flush_seconds=0))
    for i in range(10):
        if i == 5:
            limiter.update_rules(rules("2/hour"))
        limiter.decide(client(1))
        clock.advance(1)
    limiter.close()
    assert len(read_recording([path]).versions) == 2
    assert "rules changed mid-recording" in _refusal(path, rules("8/hour"))


def test_recording_gaps_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    record(path, rules("8/hour"), [(1.0, client(1))] * 30, buffer_size=10)
    assert "recording gaps" in _refusal(path, rules("8/hour"))


def test_sampling_that_cuts_a_limits_buckets_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    data = rules("1000/hour", identity="global")
    record(path, data, [(1.0, client(n)) for n in range(100)], sample=0.5)
    reason = _refusal(path, data)
    assert "sampling made a global limit unreplayable" in reason and "api" in reason


def test_verdicts_the_baseline_cannot_reproduce_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    record(path, rules("8/hour"), [(1.0, client(n % 4)) for n in range(40)])
    lines = path.read_text().splitlines()
    tampered = [line.replace('"s":200', '"s":429') if i % 5 == 4 else line
                for i, line in enumerate(lines)]  # fmt: skip
    path.write_text("\n".join(tampered) + "\n")
    reason = _refusal(path, rules("8/hour"))
    assert "disagrees with" in reason
    # A looser tolerance accepts the same recording.
    loose = preview(ruleset(rules("1/hour")), path, ruleset(rules("8/hour")), tolerance=0.5)
    assert loose.ok and loose.report["self_check"]["disagreements"] > 0


def test_concurrency_is_replayed_with_the_recorded_finish_times(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"

    def slots(n: int) -> dict[str, Any]:
        return {"rules": [{"name": "slots", "match": {"path": "/up"}, "concurrency": n}]}

    clock = ManualClock()
    limiter = Limiter(slots(2), clock=clock, record=Recorder(path, flush_seconds=0))
    held = {}
    # name: (start, finish); one identity, so the slots are shared.
    plan = {"a": (0, 3), "b": (1, 5), "c": (2, 2.5), "d": (4, 6)}
    events = sorted([(s, 1, n) for n, (s, _) in plan.items()]
                    + [(f, 0, n) for n, (_, f) in plan.items()])  # fmt: skip
    statuses = {}
    for at, starting, name in events:
        clock.set(1000.0 + at)
        if starting:
            d = limiter.decide(RequestInfo(path="/up", peer="192.0.2.1"))
            statuses[name] = d.status
            held[name] = d
        else:
            held[name].release()
    limiter.close()
    assert statuses == {"a": 200, "b": 200, "c": 429, "d": 200}

    result = preview(ruleset(slots(1)), path, ruleset(slots(2)))
    assert result.ok and result.report["self_check"]["disagreements"] == 0
    # One slot: b starts while a runs (rejected); d starts after a finished (admitted).
    assert result.report["flips"]["allowed_to_rejected"] == 1
    assert result.report["after"] == {"admitted": 2, "rejected": 2}


def test_tiers_and_a_sample_are_reported_with_their_scale(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"

    def tiered(free: str) -> dict[str, Any]:
        return {
            "tiers": ["free", "pro"],
            "rules": [{"name": "search", "match": {"path": "/search"}, "identity": "ip",
                       "limit": {"free": free, "pro": "100/hour"}}],
        }  # fmt: skip

    requests = [
        (0.1, RequestInfo(path="/search", peer=f"192.0.2.{n}", tier="pro" if n < 10 else "free"))
        for _ in range(8)
        for n in range(40)
    ]
    record(path, tiered("6/hour"), requests, sample=0.5)
    report = preview(ruleset(tiered("3/hour")), path, ruleset(tiered("6/hour"))).report
    sampled = report["recording"]["replayed"] // 8  # identities recorded, 8 requests each
    rows = {r["tier"]: r for r in report["rules"]}
    assert rows["pro"]["allowed_to_rejected"] == 0
    free = rows["free"]
    assert free["allowed_to_rejected"] == 3 * free["matched_after"] // 8  # 6 -> 3 admitted
    assert free["scaled_allowed_to_rejected"] == 2 * free["allowed_to_rejected"]
    assert report["recording"]["scale"] == 2.0 and 0 < sampled < 40
    assert any("scaled_* multiply them by 2" in note for note in report["notes"])
