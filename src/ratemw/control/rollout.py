"""Approvals and rollouts: approve a version, publish it stage by stage, roll back.

A rollout stage is what gets published: ``shadow`` publishes the version with every
rule in ``mode: shadow``; ``percent`` publishes it with a top-level
``rollout: {enforce_percent: N}``; ``enforce`` publishes the proposed bytes as they
are (:func:`ratemw.control.stages.stage_document`). A rollback republishes the
enforced version that preceded what is live. :class:`RolloutActions` holds the
actions; :data:`ENDPOINTS` routes them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ratemw.control.auth import Principal
from ratemw.control.errors import InvalidRequest, PublishFailed, Refused, ServiceError
from ratemw.control.http import Call, Endpoint
from ratemw.control.stages import STAGES, number, stage_document
from ratemw.control.versions import Version, VersionActions
from ratemw.errors import ConfigError
from ratemw.redact import redact

__all__ = ["ENDPOINTS", "Deployment", "RolloutActions"]

_COLUMNS = "id, version_id, action, stage, percent, published, actor, created_at"


@dataclass(frozen=True, slots=True)
class Deployment:
    """One publication: a version at a stage, by a rollout or a rollback."""

    id: int
    version: int
    action: str
    stage: str
    percent: float
    published: dict[str, str]
    actor: str
    created_at: str

    @property
    def rank(self) -> float:
        return {"shadow": 0.0, "enforce": 100.0}.get(self.stage, self.percent)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "version": self.version, "action": self.action,
            "stage": self.stage, "percent": self.percent, "published": self.published,
            "actor": self.actor, "created_at": self.created_at,
        }  # fmt: skip


class RolloutActions(VersionActions):
    """Approve, roll out and roll back versions; read what was published."""

    def deployments(self) -> list[Deployment]:
        """Every publication, oldest first."""
        rows = self.db.query(f"SELECT {_COLUMNS} FROM deployments ORDER BY id")
        # Keys are redacted on the way out too: rows written before redaction held URLs.
        return [
            Deployment(int(i), int(v), str(a), str(s), float(p),
                       {redact(k): d for k, d in json.loads(pub).items()}, str(who), str(t))
            for i, v, a, s, p, pub, who, t in rows
        ]  # fmt: skip

    def status(self) -> dict[str, Any]:
        """What is live, which version is enforced, and the configuration."""
        history = self.deployments()
        live = history[-1] if history else None
        enforced = next((d.version for d in reversed(history) if d.stage == "enforce"), None)
        return {
            "live": live.to_json() if live else None,
            "enforced_version": enforced,
            "targets": list(self.targets),
            "approvals_required": self.required_approvals,
        }

    def approve(self, actor: Principal, version_id: int, comment: str = "") -> Version:
        """Record ``actor``'s approval; the author may not approve their own version."""

        def body() -> tuple[Version, Any]:
            version = self.get_version(version_id)
            if version.author == actor.name:
                raise Refused(f"{actor.name} proposed version {version_id} and may not approve it")
            if any(a["principal"] == actor.name for a in version.approvals):
                raise ServiceError(f"{actor.name} already approved version {version_id}")
            if version.status not in ("proposed", "approved"):
                raise ServiceError(f"version {version_id} is {version.status}; nothing to approve")
            self.db.execute(
                "INSERT INTO approvals (version_id, principal, comment, created_at) "
                "VALUES (?, ?, ?, ?)",
                (version_id, actor.name, comment, self.clock()),
            )
            count = len(version.approvals) + 1
            if version.status == "proposed" and count >= self.required_approvals:
                self._set_status(version_id, "approved")
            detail = {"approvals": count, "required": self.required_approvals}
            return self.get_version(version_id), detail

        return self.act(actor, "approve", "approve", f"version:{version_id}", body)

    def rollout(
        self, actor: Principal, version_id: int, stage: str, percent: float | None = None
    ) -> Deployment:
        """Publish ``version_id`` at ``stage``; stages of one version only move forward."""

        def body() -> tuple[Deployment, Any]:
            share = _check_stage(stage, percent)
            version = self.get_version(version_id)
            if len(version.approvals) < self.required_approvals and version.status == "proposed":
                raise ServiceError(
                    f"version {version_id} has {len(version.approvals)} of "
                    f"{self.required_approvals} required approval(s)"
                )
            history = self.deployments()
            live = history[-1] if history else None
            if live is not None and live.version != version_id and live.stage != "enforce":
                raise ServiceError(
                    f"version {live.version} is being rolled out ({live.stage}); "
                    "enforce it or roll it back first"
                )
            rank = {"shadow": 0.0, "enforce": 100.0}.get(stage, share)
            if live is not None and live.version == version_id and rank < live.rank:
                raise ServiceError(
                    f"version {version_id} is already at {live.stage} {number(live.percent)}; "
                    "a rollout only moves forward (roll back instead)"
                )
            deployment = self._publish(actor, version, "rollout", stage, share)
            if stage == "enforce":
                for previous in {d.version for d in history if d.stage == "enforce"}:
                    if previous != version_id:
                        self._set_status(previous, "superseded", only_if="enforced")
            self._set_status(
                version_id, {"shadow": "shadow", "percent": "partial"}.get(stage, "enforced")
            )
            return deployment, deployment.to_json()

        return self.act(actor, "deploy", "rollout", f"version:{version_id}", body)

    def rollback(self, actor: Principal, reason: str = "") -> Deployment:
        """Republish the enforced version before what is live; the live one is rolled back."""

        def body() -> tuple[Deployment, Any]:
            history = self.deployments()
            if not history:
                raise ServiceError("nothing has been rolled out")
            live = history[-1]
            rolled_back = {
                int(r[0])
                for r in self.db.query("SELECT id FROM versions WHERE status = 'rolled_back'")
            }
            skip = rolled_back | {live.version}
            target = next(
                (d.version for d in reversed(history)
                 if d.stage == "enforce" and d.version not in skip),
                None,
            )  # fmt: skip
            if target is None:
                raise ServiceError(
                    f"no earlier enforced version to return to from version {live.version}"
                )
            previous = self.get_version(target)
            deployment = self._publish(actor, previous, "rollback", "enforce", 100.0)
            self._set_status(live.version, "rolled_back")
            self._set_status(target, "enforced")
            return deployment, {**deployment.to_json(), "from": live.version, "reason": reason}

        return self.act(actor, "deploy", "rollback", "rollout", body)

    def _publish(
        self, actor: Principal, version: Version, action: str, stage: str, percent: float
    ) -> Deployment:
        document, fmt = stage_document(version, stage, percent)
        label = stage if stage != "percent" else f"{number(percent)}pct"
        origin = f"control-v{version.id}-{label}.{fmt}"
        published: dict[str, str] = {}
        for url, name in zip(self._target_urls, self.targets, strict=True):
            try:
                published[name] = self.publisher(document, origin, url)
            except ConfigError as exc:
                raise PublishFailed(
                    self.scrub(f"{name} refused version {version.id}: {exc}"),
                    target=name,
                    published=published,
                ) from None
            except Exception as exc:  # a target down: nothing changes here
                raise PublishFailed(
                    self.scrub(f"publishing to {name} failed: {type(exc).__name__}: {exc}"),
                    target=name,
                    published=published,
                ) from None
        did = self._next_id("deployments", "id")
        created = self.clock()
        self.db.execute(
            f"INSERT INTO deployments ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (did, version.id, action, stage, percent, json.dumps(published), actor.name, created),
        )
        return Deployment(did, version.id, action, stage, percent, published, actor.name, created)

    def _set_status(self, version_id: int, status: str, only_if: str | None = None) -> None:
        if only_if is None:
            self.db.execute("UPDATE versions SET status = ? WHERE id = ?", (status, version_id))
        else:
            self.db.execute(
                "UPDATE versions SET status = ? WHERE id = ? AND status = ?",
                (status, version_id, only_if),
            )


def _check_stage(stage: str, percent: float | None) -> float:
    if stage not in STAGES:
        raise InvalidRequest(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    if stage != "percent":
        if percent is not None:
            raise InvalidRequest("percent goes only with stage 'percent'")
        return 0.0 if stage == "shadow" else 100.0
    if isinstance(percent, bool) or not isinstance(percent, int | float):
        raise InvalidRequest("stage 'percent' needs a number 'percent'")
    if not 0 < percent < 100:
        raise InvalidRequest("percent must be above 0 and below 100 (use stage shadow or enforce)")
    return float(percent)


# -- routes -----------------------------------------------------------------------------


def _approve(svc: RolloutActions, call: Call) -> tuple[int, Any]:
    comment = call.text(call.json(), "comment")
    return 200, {"version": svc.approve(call.principal, call.params["id"], comment).to_json()}


def _rollout(svc: RolloutActions, call: Call) -> tuple[int, Any]:
    data = call.json()
    stage = call.text(data, "stage")
    deployment = svc.rollout(call.principal, call.params["id"], stage, data.get("percent"))
    return 200, {"deployment": deployment.to_json()}


def _rollback(svc: RolloutActions, call: Call) -> tuple[int, Any]:
    reason = call.text(call.json(), "reason")
    return 200, {"deployment": svc.rollback(call.principal, reason).to_json()}


def _status(svc: RolloutActions, call: Call) -> tuple[int, Any]:
    return 200, svc.status()


def _deployments(svc: RolloutActions, call: Call) -> tuple[int, Any]:
    return 200, {"deployments": [d.to_json() for d in svc.deployments()]}


ENDPOINTS: tuple[Endpoint[RolloutActions], ...] = (
    Endpoint("POST", "/v1/versions/{id:int}/approvals", "approveVersion", "approve",
             "Approve a version (never by its author)", _approve, (200, "VersionOnly"),
             body="Approval", errors=(404, 409)),
    Endpoint("POST", "/v1/versions/{id:int}/rollout", "rolloutVersion", "deploy",
             "Publish a version at a stage: shadow, percent (enforce_percent) or enforce",
             _rollout, (200, "DeploymentOnly"), body="Rollout", errors=(404, 409, 422, 502)),
    Endpoint("POST", "/v1/rollback", "rollback", "deploy",
             "Republish the enforced version before what is live", _rollback,
             (200, "DeploymentOnly"), body="Rollback", errors=(409, 502)),
    Endpoint("GET", "/v1/status", "status", "read", "What is live and what is enforced",
             _status, (200, "Status")),
    Endpoint("GET", "/v1/deployments", "listDeployments", "read", "Every publication",
             _deployments, (200, "DeploymentList")),
)  # fmt: skip
