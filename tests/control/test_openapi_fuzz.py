"""The control service against its own OpenAPI document, with schemathesis.

Every operation, as every role (and with no token): generated requests, those that fit
the document and those that do not, must never get a 5xx, and every answer must be one
the document lists (status code, content type and schema). The app runs in-process
(schemathesis' ASGI transport) on a real SQLite file and on a real PostgreSQL database,
with a real Redis for the operations endpoints and a file publish target, seeded with
versions so that reads, approvals and rollouts find something. Hypothesis is
derandomized, so a run is the same every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ratemw.control.app import ENDPOINTS, create_app
from ratemw.control.db import Database, open_database
from tests.control import ALICE, BOB, CAROL, RULES_V1, RULES_V2, VICTOR, Api, token_table

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
EXAMPLES = 12  # per operation and role: about 1,000 requests in all
ROLES = {"viewer": VICTOR, "editor": ALICE, "approver": BOB, "admin": CAROL, "anonymous": None}


@pytest.fixture
def control(tmp_path: Path, redis_url: str, db_url: str) -> Iterator[Any]:
    live = tmp_path / "live"
    live.mkdir()
    db: Database = open_database(db_url)
    # A small cap, so that generated bodies reach it now and then.
    app = create_app(
        db, [live.as_uri()], token_table(), ops_redis=redis_url, max_body_bytes=4096
    )  # fmt: skip
    seed = Api(app)
    try:
        for document in (RULES_V1, RULES_V2, RULES_V1):
            r = seed.post("/v1/versions", ALICE, json={"document": document.decode()})
            assert r.status_code == 201, r.text
        assert seed.post("/v1/versions/1/approvals", BOB).status_code == 200
        assert seed.post("/v1/versions/2/approvals", BOB).status_code == 200
        r = seed.post("/v1/versions/1/rollout", CAROL, json={"stage": "enforce"})
        assert r.status_code == 200, r.text
        yield app
    finally:
        seed.loop.run_until_complete(seed.client.aclose())
        seed.loop.close()
        db.close()


@pytest.mark.parametrize("role", list(ROLES))
def test_every_operation_as_every_role(control: Any, role: str) -> None:
    token = ROLES[role]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    api = schemathesis.openapi.from_asgi("/openapi.json", control)
    operations = []
    for result in api.get_all_operations():
        assert isinstance(result, Ok), result.err()  # the document itself is valid
        operations.append(result.ok())
    served = {f"{ep.method} {ep.path.replace(':int', '')}" for ep in ENDPOINTS}
    # schemathesis leaves out the document itself (GET /openapi.json)
    assert served | {"GET /healthz"} == {op.label for op in operations}

    for operation in operations:
        # Requests that fit the document and requests that do not (a string for an id,
        # a body of the wrong shape): each must still get a documented answer.
        positive = operation.as_strategy(GenerationMode("positive"))
        cases = positive | operation.as_strategy(GenerationMode("negative"))

        @settings(
            max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck),
        )  # fmt: skip
        @given(case=cases)
        def check(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        check()
