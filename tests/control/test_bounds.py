"""Hostile inputs to the control service: ids past 64 bits, malformed numbers, bodies
past their cap (declared or streamed), documents that nest or alias without end. Each
gets a 404, 413 or 422 problem (never a 500), and each refused change is audited with
its principal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from ratemw.control.app import create_app
from tests.control import ALICE, BOB, CAROL, RULES_V1, VICTOR, Api, tamper, token_table

HUGE = "9" * 20  # beyond SQLite's INTEGER
CAP = 4096


@pytest.fixture
def api(db_url: str) -> Iterator[Api]:
    app = create_app(
        db_url, [], token_table(),
        max_proposal_bytes=CAP, max_body_bytes=256,
    )  # fmt: skip
    client = Api(app)
    yield client
    client.close()


def problem(r: Any, status: int, error: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert (body["status"], body["error"]) == (status, error)
    return body


def last_audit(api: Api) -> dict[str, Any]:
    entry: dict[str, Any] = api.get("/v1/audit?limit=1000", VICTOR).json()["entries"][-1]
    return entry


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        (f"/v1/versions/{HUGE}", 404, "not_found"),
        (f"/v1/versions/-{HUGE}", 404, "not_found"),
        ("/v1/versions/-1", 404, "not_found"),
        ("/v1/versions/abc", 422, "invalid_request"),
        ("/v1/versions/%D9%A1", 422, "invalid_request"),  # an Arabic-Indic digit
        (f"/v1/diff?from={HUGE}&to=1", 404, "not_found"),
        (f"/v1/diff?from=1&to={HUGE}", 404, "not_found"),
        ("/v1/diff?from=1_0&to=1", 422, "invalid_request"),
        (f"/v1/versions?before={HUGE}", 422, "invalid_request"),
        (f"/v1/versions?limit={HUGE}", 422, "invalid_request"),
        ("/v1/versions?before=%201", 422, "invalid_request"),
        (f"/v1/audit?after={HUGE}", 422, "invalid_request"),
        (f"/v1/audit?limit=-{HUGE}", 422, "invalid_request"),
        ("/v1/nothing", 404, "not_found"),
    ],
)
def test_ids_and_numbers_out_of_bounds_are_problems(
    api: Api, path: str, status: int, error: str
) -> None:
    problem(api.get(path, VICTOR), status, error)


def test_in_range_numbers_still_work(api: Api) -> None:
    assert api.post("/v1/versions", ALICE, content=RULES_V1,
                    headers={"Content-Type": "application/yaml"}).status_code == 201  # fmt: skip
    assert len(api.get(f"/v1/versions?before={2**63 - 1}", VICTOR).json()["versions"]) == 1
    assert api.get(f"/v1/audit?after={-(2**63)}", VICTOR).status_code == 200
    assert api.get("/v1/versions?limit=100000", VICTOR).status_code == 200  # clamped to 500


@pytest.mark.parametrize("path", [f"/v1/versions/{HUGE}/approvals", "/v1/versions/x/approvals"])
def test_an_approval_of_an_impossible_id_is_a_problem_and_audited(api: Api, path: str) -> None:
    r = api.post(path, BOB, json={"comment": "ok"})
    assert r.status_code in (404, 422)
    entry = last_audit(api)
    assert (entry["principal"], entry["role"], entry["outcome"]) == ("bob", "approver", "refused")
    assert entry["action"] == "approveVersion" and entry["target"] == path


def test_a_rollout_of_an_impossible_id_is_audited(api: Api) -> None:
    r = api.post(f"/v1/versions/{HUGE}/rollout", CAROL, json={"stage": "enforce"})
    problem(r, 404, "not_found")
    assert last_audit(api)["outcome"] == "refused"


def test_a_declared_oversized_proposal_is_413_and_audited(api: Api) -> None:
    big = RULES_V1 + b"#" * CAP
    r = api.post("/v1/versions", ALICE, content=big, headers={"Content-Type": "application/yaml"})
    body = problem(r, 413, "too_large")
    assert body["limit_bytes"] == CAP
    entry = last_audit(api)
    assert (entry["principal"], entry["outcome"], entry["action"]) == (
        "alice", "refused", "proposeVersion"
    )  # fmt: skip
    assert entry["detail"]["limit_bytes"] == CAP
    assert api.get("/v1/versions", VICTOR).json()["versions"] == []


def test_a_streamed_body_is_cut_off_at_the_cap_not_buffered(api: Api) -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:  # chunked: no Content-Length
        nonlocal sent
        for _ in range(10_000):  # 10 MiB, if it were all read
            sent += 1
            yield b"#" * 1024

    r = api.post("/v1/versions", ALICE, content=endless(),
                 headers={"Content-Type": "application/yaml"})  # fmt: skip
    problem(r, 413, "too_large")
    assert sent <= CAP // 1024 + 2  # the service stopped reading at the cap
    r = api.post("/v1/rollback", CAROL, content=b'{"reason": "' + b"x" * 300 + b'"}')
    problem(r, 413, "too_large")  # other bodies have their own, smaller cap
    assert last_audit(api)["detail"]["limit_bytes"] == 256


def test_a_bad_content_length_is_a_problem(api: Api) -> None:
    r = api.post("/v1/rollback", CAROL, content=b"{}", headers={"Content-Length": "x1"})
    assert r.status_code in (400, 422)  # refused by the transport or by the service


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("a: " + "[" * 5000 + "]" * 5000, "nest"),
        ('{"version": 1, "rules": ' + "[" * 3000 + "]" * 3000 + "}", "nest"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n"
                for i in range(9)
            ),
            "",
        ),
    ],
    ids=["yaml-nesting", "json-nesting", "alias-bomb"],
)
def test_documents_that_do_not_parse_safely_are_422_and_audited(
    api: Api, document: str, reason: str
) -> None:
    r = api.post("/v1/versions", ALICE, json={"document": document[: CAP - 100]})
    body = problem(r, 422, "invalid_rules")
    assert body["problems"] and reason in " ".join(p["reason"] for p in body["problems"])
    entry = last_audit(api)
    assert (entry["action"], entry["outcome"], entry["principal"]) == (
        "propose",
        "refused",
        "alice",
    )


def test_json_nested_past_the_recursion_limit_is_422(api: Api) -> None:
    r = api.post("/v1/versions", ALICE, content=b'{"a": ' + b"[" * 2040 + b"]" * 2040 + b"}")
    assert "nested too deeply" in problem(r, 422, "invalid_request")["detail"]
    assert last_audit(api)["outcome"] == "refused"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"\xff\xfe\x00garbage", "application/yaml"),
        (b"version = 1\n[[rules]]\nname = \x00", "application/toml"),
        (b'{"document": "x", "format": "xml"}', "application/json"),
        (b'{"document": 5}', "application/json"),
        (b"\xff", "application/json"),
    ],
)
def test_malformed_proposals_are_422_never_500(api: Api, body: bytes, content_type: str) -> None:
    r = api.post("/v1/versions", ALICE, content=body, headers={"Content-Type": content_type})
    assert r.status_code == 422, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert last_audit(api)["outcome"] == "refused"


def test_an_internal_failure_is_a_problem_and_audited(db_url: str) -> None:
    api = Api(create_app(db_url, [], token_table()))
    try:
        assert (
            api.post("/v1/versions", ALICE, json={"document": RULES_V1.decode()}).status_code == 201
        )
        assert api.post("/v1/versions/1/approvals", BOB).status_code == 200
        # The stored bytes go bad behind the service's back: the shadow stage cannot be derived.
        tamper(db_url, "UPDATE versions SET document = ? WHERE id = 1", b"[[[")
        r = api.post("/v1/versions/1/rollout", CAROL, json={"stage": "shadow"})
        body = problem(r, 500, "internal_error")
        assert "no longer parses" in body["detail"]
        entry = last_audit(api)
        assert (entry["action"], entry["outcome"], entry["principal"]) == (
            "rollout",
            "failed",
            "carol",
        )
        assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True
    finally:
        api.close()


def test_ops_durations_are_bounded(db_url: str, redis_url: str) -> None:
    api = Api(create_app(db_url, [], token_table(), ops_redis=redis_url))
    try:
        r = api.request("PUT", "/v1/brownout", CAROL, json={"factor": 0.5, "seconds": 5.4e16})
        assert "at most" in problem(r, 422, "invalid_request")["detail"]
        ban = {"rule": "login", "identity": "ip:203.0.113.7", "seconds": 10**12}
        problem(api.post("/v1/bans", CAROL, json=ban), 422, "invalid_request")
        assert last_audit(api)["outcome"] == "refused"
    finally:
        api.close()
