from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ratemw.control import ControlError
from ratemw.control.audit import verify
from ratemw.control.db import Database, open_database
from ratemw.control.errors import InvalidRules, NotFound, PublishFailed, Refused, ServiceError
from ratemw.control.service import ControlService
from ratemw.control.stages import stage_document
from ratemw.control.versions import Version
from ratemw.errors import ConfigError
from ratemw.rules.parse import parse_ruleset
from tests.control import ALICE, BOB, CAROL, RULES_V1, RULES_V2, principal

alice, bob, carol = principal(ALICE), principal(BOB), principal(CAROL)
dave = principal(CAROL).__class__("dave", "approver")

JSON_RULES = json.dumps(
    {"version": 1, "rules": [{"name": "a", "match": {"path": "/a"}, "limit": "5/second"}]}
).encode()
TOML_RULES = b"""version = 1
tiers = ["free", "pro"]

[defaults]
identity = "ip"

[[rules]]
name = "a"
match = {path = "/a", methods = ["GET"]}
limit = {free = "5/second", pro = "50/second"}

[[rules]]
name = "b"
match = {path = "/b"}
concurrency = 2
mode = "shadow"
"""


class Recorder:
    """A publisher that keeps what it is given; ``fail`` makes it raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, str, str]] = []
        self.fail: Exception | None = None

    def __call__(self, document: bytes, origin: str, target: str) -> str:
        if self.fail is not None:
            raise self.fail
        self.calls.append((document, origin, target))
        return f"digest-{len(self.calls)}"

    @property
    def last(self) -> bytes:
        return self.calls[-1][0]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_database(db_url)
    yield database
    database.close()


@pytest.fixture
def pub() -> Recorder:
    return Recorder()


@pytest.fixture
def svc(db: Database, pub: Recorder) -> ControlService:
    return ControlService(db, ["file:///x"], publisher=pub)


def approved(svc: ControlService, document: bytes = RULES_V1, fmt: str = "yaml") -> int:
    version, _ = svc.propose(alice, document, fmt)
    svc.approve(bob, version.id)
    return version.id


def version_of(document: bytes, fmt: str) -> Version:
    return Version(7, "d", fmt, document, "alice", "", "t", "approved")


@pytest.mark.parametrize(("document", "fmt"), [(RULES_V1, "yaml"), (JSON_RULES, "json"),
                                               (TOML_RULES, "toml")])  # fmt: skip
def test_staged_documents_keep_the_format_and_differ_only_in_mode_and_rollout(
    document: bytes, fmt: str
) -> None:
    version = version_of(document, fmt)
    original, _ = parse_ruleset(document, f"x.{fmt}", fmt)
    assert original is not None
    assert stage_document(version, "enforce") == (document, fmt)

    shadow_bytes, shadow_fmt = stage_document(version, "shadow")
    assert shadow_fmt == fmt
    shadow, problems = parse_ruleset(shadow_bytes, f"x.{fmt}", fmt)
    assert shadow is not None, problems
    assert {r.mode for r in shadow.rules} == {"shadow"}
    assert [r.limit for r in shadow.rules] == [r.limit for r in original.rules]
    assert shadow.tiers == original.tiers and shadow.defaults == original.defaults

    share_bytes, _ = stage_document(version, "percent", 12.5)
    share, problems = parse_ruleset(share_bytes, f"x.{fmt}", fmt)
    assert share is not None, problems
    assert share.rollout is not None and share.rollout.enforce_percent == 12.5
    assert [r.mode for r in share.rules] == [r.mode for r in original.rules]
    assert stage_document(version, "percent", 12.5)[0] == share_bytes  # deterministic


def test_propose_validates_and_keeps_the_bytes(svc: ControlService) -> None:
    version, warnings = svc.propose(alice, RULES_V1, "yaml", "first")
    assert warnings == []
    assert svc.get_version(version.id).document == RULES_V1
    assert version.status == "proposed" and version.author == "alice"
    with pytest.raises(InvalidRules) as caught:
        svc.propose(alice, b"version: 2\n", "yaml")
    assert caught.value.extra["problems"][0]["line"] == 1
    with pytest.raises(ServiceError, match="unknown format"):
        svc.propose(alice, RULES_V1, "ini")
    with pytest.raises(NotFound):
        svc.get_version(99)


def test_required_approvals_and_self_approval(db: Database, pub: Recorder) -> None:
    svc = ControlService(db, [], publisher=pub, required_approvals=2)
    version, _ = svc.propose(carol, RULES_V1)
    with pytest.raises(Refused):
        svc.approve(carol, version.id)
    assert svc.approve(bob, version.id).status == "proposed"
    with pytest.raises(ServiceError, match="already approved"):
        svc.approve(bob, version.id)
    with pytest.raises(ServiceError, match="1 of 2"):
        svc.rollout(carol, version.id, "shadow")
    assert svc.approve(dave, version.id).status == "approved"
    svc.rollout(carol, version.id, "shadow")
    assert pub.calls == []  # no targets: the state moves, nothing is written
    with pytest.raises(ControlError):
        ControlService(db, [], required_approvals=0)


def test_one_rollout_at_a_time_and_forward_only(svc: ControlService, pub: Recorder) -> None:
    v1, v2 = approved(svc), approved(svc, RULES_V2)
    svc.rollout(carol, v1, "percent", 10)
    with pytest.raises(ServiceError, match="being rolled out"):
        svc.rollout(carol, v2, "shadow")
    with pytest.raises(ServiceError, match="only moves forward"):
        svc.rollout(carol, v1, "percent", 5)
    svc.rollout(carol, v1, "percent", 10)  # the same stage again republishes
    svc.rollout(carol, v1, "percent", 50)
    deployment = svc.rollout(carol, v1, "enforce")
    assert deployment.published == {"file:///x": "digest-4"}
    assert pub.calls[-1][1:] == (f"control-v{v1}-enforce.yaml", "file:///x")
    assert pub.calls[0][1] == f"control-v{v1}-10pct.yaml"
    svc.rollout(carol, v2, "shadow")  # v1 is enforced: a new rollout may start
    assert svc.status()["enforced_version"] == v1


def test_rollback_walks_back_through_enforced_versions(svc: ControlService, pub: Recorder) -> None:
    v1, v2, v3 = approved(svc), approved(svc, RULES_V2), approved(svc, RULES_V1 + b"\n")
    for v in (v1, v2, v3):
        svc.rollout(carol, v, "enforce")
    assert [svc.get_version(v).status for v in (v1, v2, v3)] == [
        "superseded", "superseded", "enforced"
    ]  # fmt: skip
    assert svc.rollback(carol).version == v2
    assert pub.last == RULES_V2
    assert svc.rollback(carol).version == v1
    assert [svc.get_version(v).status for v in (v1, v2, v3)] == [
        "enforced", "rolled_back", "rolled_back"
    ]  # fmt: skip
    with pytest.raises(ServiceError, match="no earlier enforced version"):
        svc.rollback(carol)
    # a rolled-back version may be rolled out again, and rolled back from mid-rollout
    svc.rollout(carol, v2, "shadow")
    deployment = svc.rollback(carol, "shadow showed too many blocks")
    assert (deployment.version, deployment.stage, pub.last) == (v1, "enforce", RULES_V1)


def test_a_failed_publication_changes_nothing_and_is_audited(
    svc: ControlService, pub: Recorder
) -> None:
    v1 = approved(svc)
    pub.fail = ConnectionError("target down")
    with pytest.raises(PublishFailed, match="target down"):
        svc.rollout(carol, v1, "shadow")
    assert svc.status()["live"] is None and svc.get_version(v1).status == "approved"
    pub.fail = ConfigError([])
    with pytest.raises(PublishFailed, match="refused"):
        svc.rollout(carol, v1, "shadow")
    entries = svc.audit.entries()
    assert [(e.action, e.outcome) for e in entries[-2:]] == [("rollout", "failed")] * 2
    assert json.loads(entries[-2].detail)["target"] == "file:///x"
    assert verify(svc.db).ok


def test_diff_text_and_rule_changes(svc: ControlService) -> None:
    v1, v2 = approved(svc), approved(svc, RULES_V2)
    diff = svc.diff(v1, v2)
    assert diff["same_rules"] is False
    assert diff["unified"].startswith(f"--- v{v1}.yaml\n+++ v{v2}.yaml\n")
    assert len(diff["changes"]) == 2
    assert svc.diff(v1, v1) == {**svc.diff(v1, v1), "same_rules": True, "unified": "",
                                "changes": []}  # fmt: skip
