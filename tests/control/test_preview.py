"""``POST /v1/versions/{id}/preview``: a recording made by a real limiter, replayed by the
control service against a proposed version and the enforced one, gives the report
``ratemw replay`` gives for the same files; stored per version, baseline and recording."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.cli import main
from ratemw.control.app import create_app, openapi_document
from ratemw.control.preview_api import headline
from ratemw.ops.record import Recorder
from ratemw.rules.parse import parse_ruleset
from ratemw.testing import ManualClock
from tests.control import ALICE, BOB, CAROL, VICTOR, Api, token_table

BASE = b"""version: 1
tiers: [free, pro]
rules:
  - name: search
    match: {path: /search}
    identity: api_key
    limit: {free: 30/minute, pro: 300/minute}
  - name: api
    match: {path: "/api/**"}
    identity: ip
    limit: 120/minute
  - name: export
    match: {path: /export}
    identity: api_key
    limit: 5/hour
"""
# The free tier of search halved.
CANDIDATE = BASE.replace(b"free: 30/minute", b"free: 15/minute")


def make_recording(path: Path, document: bytes) -> None:
    """Six minutes of traffic decided by a real recording limiter on a manual clock:
    20 free and 5 pro API keys, ten of the free ones busy in minutes 2 and 3."""
    ruleset, problems = parse_ruleset(document, "rules.yaml")
    assert ruleset is not None, problems
    clock = ManualClock()  # wall time 2023-11-14 22:30:00 UTC at the start
    recorder = Recorder(path, hash_key=b"preview-tests-key", flush_seconds=0)
    limiter = Limiter(ruleset, clock=clock, record=recorder, operations={"interval_seconds": 0})
    try:
        for minute in range(6):
            for second in range(60):
                for n in range(25):
                    busy = minute in (2, 3) and n < 10
                    if second % (2 if busy else 6):
                        continue
                    tier = "free" if n < 20 else "pro"
                    info = RequestInfo(path="/search", api_key=f"key-{n}", tier=tier,
                                       peer=f"192.0.2.{n}")  # fmt: skip
                    limiter.decide(info)
                if second % 10 == 0:
                    limiter.decide(RequestInfo(path="/api/items", peer="198.51.100.7"))
                clock.advance(1.0)
    finally:
        limiter.close()


def replay_cli(tmp: Path, recording: Path) -> dict[str, object]:
    """What ``ratemw replay --json`` reports for the same rules and recording."""
    (tmp / "base.yaml").write_bytes(BASE)
    (tmp / "cand.yaml").write_bytes(CANDIDATE)
    out = io.StringIO()
    argv = ["replay", "--rules", str(tmp / "cand.yaml"), "--baseline", str(tmp / "base.yaml"),
            "--traffic", str(recording), "--json"]  # fmt: skip
    code = main(argv, out=out)
    assert code == 0, out.getvalue()
    return dict(json.loads(out.getvalue()))


@pytest.fixture
def recording(tmp_path: Path) -> Path:
    path = tmp_path / "traffic.jsonl"
    make_recording(path, BASE)
    return path


@pytest.fixture
def api(db_url: str, tmp_path: Path, recording: Path) -> Iterator[Api]:
    live = tmp_path / "live"
    live.mkdir()
    client = Api(create_app(db_url, [live.as_uri()], token_table(), traffic=recording))
    yield client
    client.close()


def propose(api: Api, document: bytes) -> int:
    r = api.post("/v1/versions", ALICE, json={"document": document.decode()})
    assert r.status_code == 201, r.text
    return int(r.json()["version"]["id"])


def enforce(api: Api, vid: int) -> None:
    assert api.post(f"/v1/versions/{vid}/approvals", BOB, json={}).status_code == 200
    r = api.post(f"/v1/versions/{vid}/rollout", CAROL, json={"stage": "enforce"})
    assert r.status_code == 200, r.text


def test_halving_a_limit_previews_the_flips_ratemw_replay_reports(
    api: Api, recording: Path, tmp_path: Path
) -> None:
    v1 = propose(api, BASE)
    r = api.post(f"/v1/versions/{v1}/preview", VICTOR)
    assert r.status_code == 409 and "nothing is enforced" in r.json()["detail"]
    enforce(api, v1)
    v2 = propose(api, CANDIDATE)
    assert api.get(f"/v1/versions/{v2}/preview", VICTOR).status_code == 404

    r = api.post(f"/v1/versions/{v2}/preview", VICTOR)  # a read: every role may preview
    assert r.status_code == 200, r.text
    got = r.json()["preview"]
    assert got["ok"] is True and got["cached"] is False and got["reasons"] == []
    assert (got["version"], got["baseline"]) == (v2, v1)
    expected = replay_cli(tmp_path, recording)
    assert got["report"] == expected  # the same engine, the same figures
    flips = expected["flips"]
    assert isinstance(flips, dict) and flips["allowed_to_rejected"] > 0
    (row,) = [r for r in got["report"]["rules"] if r["allowed_to_rejected"]]
    assert (row["rule"], row["tier"], row["rejected_to_allowed"]) == ("search", "free", 0)
    # Ten busy free keys send 30 a minute in minutes 2 and 3: 15/minute rejects 16 of
    # each one's 60, 150 of the 160 in minute 3 (their buckets drained in minute 2).
    assert (row["allowed_to_rejected"], row["matched_after"], row["identities"]) == (160, 1600, 10)
    assert [m["flips"] for m in got["report"]["minutes"]] == [150, 10]
    assert got["report"]["never_matched"] == ["export"]
    assert got["headline"] == (
        "this change would reject 10.0 % of search for free users, 10 identities, "
        "mostly between 22:33 and 22:34 UTC"
    )

    again = api.post(f"/v1/versions/{v2}/preview", BOB).json()["preview"]
    assert again["cached"] is True and again["id"] == got["id"]
    assert again["report"] == got["report"]
    stored = api.get(f"/v1/versions/{v2}/preview", VICTOR).json()["preview"]
    assert stored["id"] == got["id"] and stored["headline"] == got["headline"]

    # The replay that ran is audited with the recording's digest; the refusal too.
    entries = api.get("/v1/audit", CAROL).json()["entries"]
    runs = [(e["outcome"], e["principal"], e["detail"].get("recording"))
            for e in entries if e["action"] == "previewVersion"]  # fmt: skip
    assert runs == [("refused", "victor", None), ("ok", "victor", got["recording"][:16])]


def test_a_recording_of_other_rules_is_refused_with_its_reason(api: Api, recording: Path) -> None:
    v1 = propose(api, BASE)
    enforce(api, v1)
    v2 = propose(api, CANDIDATE)
    first = api.post(f"/v1/versions/{v2}/preview", ALICE).json()["preview"]
    assert first["ok"] is True
    # New traffic, recorded while the candidate was live: a new recording digest, and
    # the enforced version is not the baseline the self-check needs.
    for file in recording.parent.glob(recording.name + "*"):
        file.unlink()
    make_recording(recording, CANDIDATE)
    r = api.post(f"/v1/versions/{v2}/preview", ALICE)
    assert r.status_code == 200, r.text
    refused = r.json()["preview"]
    assert refused["recording"] != first["recording"] and refused["cached"] is False
    assert refused["ok"] is False and refused["headline"] is None
    assert any("the baseline" in reason for reason in refused["reasons"])
    assert "rules" not in refused["report"]  # no figures from a replay that failed
    assert headline(refused["report"]) is None


def test_without_a_usable_recording_the_answer_says_why(
    db_url: str, tmp_path: Path, recording: Path
) -> None:
    live = tmp_path / "live2"
    live.mkdir()
    for traffic, cap, why in (
        (None, 10**9, "start ratemw control with --traffic PATH"),
        (tmp_path / "missing.jsonl", 10**9, "no recording file found"),
        (recording, 100, "more than the 100 a preview reads"),
    ):
        app = create_app(db_url, [live.as_uri()], token_table(), traffic=traffic,
                         max_traffic_bytes=cap)  # fmt: skip
        api = Api(app)
        try:
            if traffic is None:  # the first app: the versions the others read
                enforce(api, propose(api, BASE))
            r = api.post("/v1/versions/1/preview", VICTOR)
            assert r.status_code == 503 and r.json()["error"] == "preview_unavailable"
            assert why in r.json()["detail"] and str(tmp_path) not in r.json()["detail"]
            assert api.post("/v1/versions/99/preview", VICTOR).status_code == 404
            assert api.post("/v1/versions/1/preview").status_code == 401
        finally:
            api.close()


def test_the_openapi_document_lists_the_preview() -> None:
    path = openapi_document()["paths"]["/v1/versions/{id}/preview"]
    assert path["post"]["operationId"] == "previewVersion"
    assert path["get"]["operationId"] == "getPreview"
    for op in path.values():
        assert op["description"] == "Roles: admin, approver, editor, viewer."
        assert op["responses"]["200"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/PreviewOnly"
        }
    assert "503" in path["post"]["responses"]
