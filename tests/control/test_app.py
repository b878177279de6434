from __future__ import annotations

import io
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from ratemw.cli import main
from ratemw.control.app import ENDPOINTS, create_app, openapi_document
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import parse_ruleset
from tests.control import (
    ALICE,
    BOB,
    CAROL,
    RULES_V1,
    RULES_V2,
    VICTOR,
    Api,
    tamper,
    token_table,
)  # fmt: skip


@pytest.fixture
def live(tmp_path: Path) -> Path:
    directory = tmp_path / "live"
    directory.mkdir()
    return directory


@pytest.fixture
def api(db_url: str, live: Path) -> Iterator[Api]:
    client = Api(create_app(db_url, [live.as_uri()], token_table()))
    yield client
    client.close()


def published(live: Path) -> bytes:
    return (live / "ratelimits.yaml").read_bytes()


def parsed(document: bytes) -> RuleSet:
    ruleset, problems = parse_ruleset(document, "published.yaml")
    assert ruleset is not None, problems
    return ruleset


def propose(api: Api, token: str, document: bytes, message: str = "") -> int:
    r = api.post("/v1/versions", token, json={"document": document.decode(), "message": message})
    assert r.status_code == 201, r.text
    return int(r.json()["version"]["id"])


def rollout(api: Api, version: int, stage: str, percent: float | None = None) -> dict[str, Any]:
    body: dict[str, object] = {"stage": stage}
    if percent is not None:
        body["percent"] = percent
    r = api.post(f"/v1/versions/{version}/rollout", CAROL, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json()["deployment"])


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_full_flow_with_audit_chain_and_tampering(api: Api, live: Path, db_url: str) -> None:
    # v1 goes straight to enforce: the baseline a rollback returns to.
    v1 = propose(api, ALICE, RULES_V1, "baseline")
    assert api.post(f"/v1/versions/{v1}/approvals", BOB, json={}).status_code == 200
    rollout(api, v1, "enforce")
    assert published(live) == RULES_V1

    # v2: the author may not approve their own version; a second principal may.
    v2 = propose(api, CAROL, RULES_V2, "tighter login")
    r = api.post(f"/v1/versions/{v2}/approvals", CAROL, json={"comment": "mine"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert "may not approve" in r.json()["detail"]
    r = api.post(f"/v1/versions/{v2}/approvals", BOB, json={"comment": "lgtm"})
    assert r.status_code == 200 and r.json()["version"]["status"] == "approved"

    diff = api.get(f"/v1/diff?from={v1}&to={v2}", VICTOR).json()
    assert "-    limit: 5/minute" in diff["unified"] and "+    limit: 3/minute" in diff["unified"]
    assert any("login" in line and "lowered" in line for line in diff["changes"])

    # shadow: every rule shadow, the already-shadow rule too
    rollout(api, v2, "shadow")
    shadow = parsed(published(live))
    assert [r.mode for r in shadow.rules] == ["shadow", "shadow", "shadow"]
    assert shadow.rollout is None

    # 25 %: the proposed modes, a top-level enforce share
    rollout(api, v2, "percent", 25)
    quarter = parsed(published(live))
    assert [r.mode for r in quarter.rules] == ["enforce", "enforce", "shadow"]
    assert quarter.rollout is not None and quarter.rollout.enforce_percent == 25
    assert quarter.digest != parsed(RULES_V2).digest

    back = api.post(f"/v1/versions/{v2}/rollout", CAROL, json={"stage": "shadow"})
    assert back.status_code == 409 and "only moves forward" in back.json()["detail"]

    # enforce: the proposed bytes exactly
    rollout(api, v2, "enforce")
    assert published(live) == RULES_V2
    status = api.get("/v1/status", VICTOR).json()
    assert status["enforced_version"] == v2 and status["live"]["stage"] == "enforce"
    assert api.get(f"/v1/versions/{v1}", VICTOR).json()["version"]["status"] == "superseded"

    # rollback: the previous enforced version, as proposed
    r = api.post("/v1/rollback", CAROL, json={"reason": "too strict"})
    assert r.status_code == 200, r.text
    assert r.json()["deployment"] == {**r.json()["deployment"], "version": v1, "action": "rollback"}
    assert published(live) == RULES_V1
    statuses = {v["id"]: v["status"] for v in api.get("/v1/versions", VICTOR).json()["versions"]}
    assert statuses == {v1: "enforced", v2: "rolled_back"}
    got = api.get(f"/v1/versions/{v2}", VICTOR).json()["version"]
    assert got["document"] == RULES_V2.decode() and got["approvals"][0]["principal"] == "bob"

    # every action is in the log, in order, and the chain holds
    entries = api.get("/v1/audit", VICTOR).json()["entries"]
    actions = [(e["principal"], e["action"], e["outcome"]) for e in entries]
    assert actions == [
        ("alice", "propose", "ok"),
        ("bob", "approve", "ok"),
        ("carol", "rollout", "ok"),
        ("carol", "propose", "ok"),
        ("carol", "approve", "refused"),
        ("bob", "approve", "ok"),
        ("carol", "rollout", "ok"),
        ("carol", "rollout", "ok"),
        ("carol", "rollout", "refused"),
        ("carol", "rollout", "ok"),
        ("carol", "rollback", "ok"),
    ]
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(entries))
    assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True
    code, text = cli("audit", "verify", "--db", db_url)
    assert code == 0 and text.startswith(f"ok: {len(entries)} audit entries")

    # tampering with the database directly, behind the service's back
    tamper(db_url, "UPDATE audit_log SET principal = 'mallory' WHERE seq = 4")
    code, text = cli("audit", "verify", "--db", db_url)
    assert code == 1 and "audit entry 4:" in text and "edited" in text
    tamper(db_url, "UPDATE audit_log SET principal = 'carol' WHERE seq = 4")
    assert cli("audit", "verify", "--db", db_url)[0] == 0
    tamper(db_url, "DELETE FROM audit_log WHERE seq = 6")
    code, text = cli("audit", "verify", "--db", db_url)
    assert code == 1 and "audit entry 6:" in text and "missing" in text
    assert api.get("/v1/audit/verify", VICTOR).json()["broken"] == 6


def test_publication_to_redis(db_url: str, live: Path, redis_url: str) -> None:
    target = f"{redis_url}/0?key=ratemw:rules"
    client = Api(create_app(db_url, [live.as_uri(), target], token_table()))
    try:
        v1 = propose(client, ALICE, RULES_V1)
        client.post(f"/v1/versions/{v1}/approvals", BOB)
        deployment = rollout(client, v1, "shadow")
    finally:
        client.close()
    with redis.Redis.from_url(redis_url) as r:
        stored = r.get("ratemw:rules")
    assert stored == published(live)
    assert {r.mode for r in parsed(stored).rules} == {"shadow"}
    assert set(deployment["published"]) == {live.as_uri(), target}


def test_invalid_proposal_gets_422_with_lines_and_an_audit_entry(api: Api) -> None:
    bad = "version: 1\nrules:\n  - name: a\n    match: {path: /a}\n    limit: 0/minute\n"
    bad += "  - name: b\n    match: {path: /b}\n    limt: 5/minute\n"
    r = api.post("/v1/versions", ALICE, json={"document": bad})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "invalid_rules"
    lines = {p["line"] for p in body["problems"] if p["severity"] == "error"}
    assert {5, 8} <= lines
    assert any("did you mean 'limit'" in p["reason"] for p in body["problems"])
    assert api.get("/v1/versions", VICTOR).json()["versions"] == []
    last = api.get("/v1/audit", VICTOR).json()["entries"][-1]
    assert (last["action"], last["outcome"]) == ("propose", "refused")


def test_raw_yaml_body_is_accepted(api: Api) -> None:
    r = api.post(
        "/v1/versions?message=raw",
        ALICE,
        content=RULES_V1,
        headers={"Content-Type": "application/yaml"},
    )
    assert r.status_code == 201, r.text
    version = api.get(f"/v1/versions/{r.json()['version']['id']}", ALICE).json()["version"]
    assert version["document"] == RULES_V1.decode() and version["message"] == "raw"


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no bearer token"),
        ({"Authorization": "Bearer not-a-token"}, "unknown token"),
        ({"Authorization": "Basic dG9rLWNhcm9s"}, "no bearer token"),
    ],
)
def test_401_without_or_with_a_wrong_token_is_audited(
    api: Api, headers: dict[str, str], reason: str
) -> None:
    r = api.post("/v1/versions", headers=headers, json={"document": RULES_V1.decode()})
    assert r.status_code == 401
    assert r.json() == {
        "error": "unauthenticated", "detail": reason, "status": 401, "title": "Unauthorized"
    }  # fmt: skip
    assert r.headers["content-type"] == "application/problem+json"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.get("/v1/status").status_code == 401
    entries = api.get("/v1/audit", CAROL).json()["entries"]
    assert [(e["action"], e["outcome"], e["principal"]) for e in entries] == [
        ("proposeVersion", "unauthenticated", "-"),
        ("status", "unauthenticated", "-"),
    ]
    assert entries[0]["detail"] == {"method": "POST", "reason": reason}
    assert "not-a-token" not in json.dumps(entries)


@pytest.mark.parametrize(
    ("token", "method", "path"),
    [
        (VICTOR, "POST", "/v1/versions"),
        (BOB, "POST", "/v1/versions"),
        (ALICE, "POST", "/v1/versions/1/approvals"),
        (BOB, "POST", "/v1/versions/1/rollout"),
        (ALICE, "POST", "/v1/rollback"),
    ],
)
def test_403_for_a_role_that_may_not_is_audited(
    api: Api, token: str, method: str, path: str
) -> None:
    r = api.request(method, path, token, json={"document": "x", "stage": "enforce"})
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    last = api.get("/v1/audit", VICTOR).json()["entries"][-1]
    assert last["outcome"] == "forbidden" and last["target"] == path
    assert last["principal"] != "-" and "may not" in last["detail"]["reason"]
    assert api.get("/v1/versions", VICTOR).json()["versions"] == []


def test_conflicts_and_not_found(api: Api) -> None:
    assert api.get("/v1/versions/9", VICTOR).status_code == 404
    v1 = propose(api, ALICE, RULES_V1)
    r = api.post(f"/v1/versions/{v1}/rollout", CAROL, json={"stage": "shadow"})
    assert r.status_code == 409 and "approval" in r.json()["detail"]
    api.post(f"/v1/versions/{v1}/approvals", BOB)
    assert api.post(f"/v1/versions/{v1}/approvals", BOB).status_code == 409
    for body in ({"stage": "percent"}, {"stage": "percent", "percent": 100}, {"stage": "x"}):
        assert api.post(f"/v1/versions/{v1}/rollout", CAROL, json=body).status_code == 422
    r = api.post("/v1/rollback", CAROL)
    assert r.status_code == 409 and "nothing" in r.json()["detail"]
    assert api.get("/v1/diff?from=1", VICTOR).status_code == 422
    assert api.post("/v1/versions", ALICE, content=b"[1]").status_code == 422


def test_openapi_document_lists_every_endpoint(api: Api) -> None:
    r = api.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc == json.loads(json.dumps(openapi_document()))
    assert doc["openapi"].startswith("3.")
    for ep in ENDPOINTS:
        path = ep.path.replace(":int", "")
        op = doc["paths"][path][ep.method.lower()]
        assert {"401", "403", str(ep.ok[0])} <= set(op["responses"])
    refs = {
        ref.rsplit("/", 1)[1]
        for ref in _walk(doc)
        if isinstance(ref, str) and ref.startswith("#/components/schemas/")
    }
    assert refs <= set(doc["components"]["schemas"])
    assert api.get("/healthz").json() == {"ok": True}


def _walk(value: object) -> Iterator[object]:
    if isinstance(value, dict):
        for v in value.values():
            yield from _walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v)
    else:
        yield value
