"""Two ``ratemw control`` processes on one PostgreSQL database, under concurrent load.

Both start at once on an empty database (their migrations race), publish to the same
directory, and take bursts of requests released together from many threads, split
between the two: proposals, approvals (two needed, so a lost update leaves a version
unapproved), enforcements, a race to start a rollout, forward moves, rollbacks. Then:
the audit chain verifies, every answered change is in it exactly once, ids have no
duplicate or gap, and replaying the deployments through the workflow's rules gives
every version's status, the live deployment and the published document.
"""

from __future__ import annotations

import io
import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from ratemw.cli import main
from ratemw.control.stages import stage_document
from ratemw.control.versions import Version
from tests.control import ALICE, BOB, CAROL, PEOPLE, RULES_V1, VICTOR
from tests.control.serving import DEADLINE_SECONDS, ControlProcess

N = 8  # versions proposed through each instance
Call = tuple[ControlProcess, str, str, str, dict[str, Any]]  # where, method, path, token, json


@pytest.fixture
def pair(tmp_path: Path, postgres_url: str) -> Iterator[tuple[ControlProcess, ControlProcess]]:
    live = tmp_path / "live"
    live.mkdir()
    args = ("--publish", live.as_uri(), "--approvals", "2")
    with ThreadPoolExecutor(2) as pool:  # both migrate the empty database at once
        starts = [pool.submit(ControlProcess, tmp_path, postgres_url, *args) for _ in "ab"]
        started = [s.result() for s in starts]
    yield started[0], started[1]
    for control in started:
        control.close()


def race(calls: Sequence[Call], log: list[tuple[Call, httpx.Response]]) -> list[httpx.Response]:
    """Send every call at once, each from a thread of its own; log them with answers."""
    gate = threading.Barrier(len(calls))

    def send(call: Call) -> httpx.Response:
        where, method, path, token, body = call
        gate.wait(timeout=DEADLINE_SECONDS)
        return where.call(method, path, token, json=body)

    with ThreadPoolExecutor(len(calls)) as pool:
        answers = list(pool.map(send, calls))
    log.extend(zip(calls, answers, strict=True))
    for (_, method, path, _, _), r in zip(calls, answers, strict=True):
        assert r.status_code in (200, 201, 409), f"{method} {path}: {r.status_code} {r.text}"
    return answers


def audited_as(call: Call, r: httpx.Response) -> tuple[str, str, str, str]:
    """The audit entry (principal, action, target, outcome) an answered change must leave."""
    _, _, path, token, _ = call
    outcome = "ok" if r.status_code < 300 else "refused"
    if path == "/v1/versions":
        return PEOPLE[token][0], "propose", "versions", outcome
    if path == "/v1/rollback":
        return PEOPLE[token][0], "rollback", "rollout", outcome
    version, action = path.split("/")[3:5]
    return (
        PEOPLE[token][0],
        {"approvals": "approve"}.get(action, action),
        f"version:{version}",
        outcome,
    )


def rank(d: dict[str, Any]) -> float:
    return float({"shadow": 0.0, "enforce": 100.0}.get(d["stage"], d["percent"]))


def replay(deployments: list[dict[str, Any]], status: dict[int, str]) -> None:
    """Check that each deployment was allowed after the ones before it (one at a time),
    and apply it to ``status`` as the workflow says."""
    history: list[dict[str, Any]] = []
    for d in deployments:
        live = history[-1] if history else None
        if d["action"] == "rollout":
            if live is not None and live["version"] != d["version"]:
                assert live["stage"] == "enforce", f"{d} started during {live}"
            if live is not None and live["version"] == d["version"]:
                assert rank(d) >= rank(live), f"{d} went back from {live}"
            if d["stage"] == "enforce":
                for h in history:
                    if h["stage"] == "enforce" and status[h["version"]] == "enforced":
                        status[h["version"]] = "superseded"
            status[d["version"]] = {"shadow": "shadow", "percent": "partial"}.get(
                d["stage"], "enforced"
            )
        else:
            assert live is not None
            skip = {v for v, s in status.items() if s == "rolled_back"} | {live["version"]}
            earlier = [h["version"] for h in history if h["stage"] == "enforce"]
            target = next(v for v in reversed(earlier) if v not in skip)
            assert (d["version"], d["stage"]) == (target, "enforce"), f"{d} after {live}"
            status[live["version"]], status[target] = "rolled_back", "enforced"
        history.append(d)


def test_two_instances_on_one_database_take_turns(
    pair: tuple[ControlProcess, ControlProcess], postgres_url: str, tmp_path: Path
) -> None:
    a, b = pair
    both = itertools.cycle((a, b))
    log: list[tuple[Call, httpx.Response]] = []

    def rollouts(stages: Sequence[tuple[int, dict[str, Any]]]) -> list[Call]:
        return [(next(both), "POST", f"/v1/versions/{v}/rollout", CAROL, s) for v, s in stages]

    # Proposals: 2N at once, N through each instance.
    document = RULES_V1.decode()
    proposals: list[Call] = [
        (next(both), "POST", "/v1/versions", ALICE, {"document": document, "message": f"m{n}"})
        for n in range(2 * N)
    ]
    answers = race(proposals, log)
    ids = {r.json()["version"]["id"]: r.json()["version"]["message"] for r in answers}
    assert sorted(ids) == list(range(1, 2 * N + 1))  # no id twice, none skipped
    assert sorted(ids.values()) == sorted(f"m{n}" for n in range(2 * N))

    # Approvals: bob through both instances (one must be 409), carol through one.
    approvals: list[Call] = []
    for v in ids:
        path = f"/v1/versions/{v}/approvals"
        approvals += [(a, "POST", path, BOB, {}), (b, "POST", path, BOB, {}),
                      (next(both), "POST", path, CAROL, {})]  # fmt: skip
    answers = race(approvals, log)
    for v, first, second, third in zip(ids, *[iter(answers)] * 3, strict=True):
        assert sorted((first.status_code, second.status_code)) == [200, 409], v
        assert third.status_code == 200
    listed = a.call("GET", "/v1/versions", VICTOR).json()["versions"]
    assert {v["status"] for v in listed} == {"approved"}  # two approvals each, none lost
    # Enforce every version at once: each supersedes the one enforced before it.
    answers = race(rollouts([(v, {"stage": "enforce"}) for v in ids]), log)
    assert {r.status_code for r in answers} == {200}
    # A race to start a rollout: the first shadow wins, the others are refused (409).
    answers = race(rollouts([(v, {"stage": "shadow"}) for v in ids]), log)
    winners = [r.json()["deployment"]["version"] for r in answers if r.status_code == 200]
    assert len(winners) == 1, winners
    # Forward moves on the winner (those that would go back are refused), and with
    # them, more proposals and rollbacks.
    moves = rollouts([(winners[0], {"stage": "percent", "percent": p}) for p in range(10, 100, 15)])
    moves += [(next(both), "POST", "/v1/rollback", CAROL, {"reason": f"r{n}"}) for n in range(3)]
    moves += [(next(both), "POST", "/v1/versions", ALICE, {"document": document}) for _ in "ab"]
    race(moves, log)

    # The audit chain holds, checked by both instances and by the command.
    for control in pair:
        assert control.call("GET", "/v1/audit/verify", VICTOR).json()["ok"] is True
    out = io.StringIO()
    assert main(["audit", "verify", "--db", postgres_url], out=out) == 0, out.getvalue()
    entries = a.call("GET", "/v1/audit?limit=1000", VICTOR).json()["entries"]
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    # Every answered change is in it exactly once, and nothing else is.
    wanted = Counter(audited_as(call, r) for call, r in log)
    found = Counter((e["principal"], e["action"], e["target"], e["outcome"]) for e in entries)
    assert found == wanted

    # Versions: contiguous ids, two approvals each (none lost), statuses by the rules.
    versions = {v["id"]: v for v in b.call("GET", "/v1/versions", VICTOR).json()["versions"]}
    assert sorted(versions) == list(range(1, 2 * N + 3))
    for v in ids:
        assert sorted(x["principal"] for x in versions[v]["approvals"]) == ["bob", "carol"]
    deployments = a.call("GET", "/v1/deployments", VICTOR).json()["deployments"]
    assert [d["id"] for d in deployments] == list(range(1, len(deployments) + 1))
    accepted = [r.json()["deployment"] for _, r in log if "deployment" in r.json()]
    assert sorted(accepted, key=lambda d: d["id"]) == deployments
    status = {v: "approved" if v in ids else "proposed" for v in versions}
    replay(deployments, status)
    assert {v: x["status"] for v, x in versions.items()} == status
    assert list(status.values()).count("enforced") == 1

    # What is live is the last deployment, and the directory holds its document.
    live = deployments[-1]
    assert b.call("GET", "/v1/status", VICTOR).json()["live"] == live
    got = a.call("GET", f"/v1/versions/{live['version']}", VICTOR).json()["version"]
    version = Version(got["id"], got["digest"], got["format"], got["document"].encode(),
                      got["author"], got["message"], got["created_at"], got["status"])  # fmt: skip
    expected, _ = stage_document(version, live["stage"], live["percent"])
    assert (tmp_path / "live" / "ratelimits.yaml").read_bytes() == expected
