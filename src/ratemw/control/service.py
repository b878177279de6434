"""The control plane's domain: propose, approve, roll out, roll back, read.

A rollout stage is what gets published: ``shadow`` publishes the version with every
rule in ``mode: shadow``; ``percent`` publishes it with a top-level
``rollout: {enforce_percent: N}``; ``enforce`` publishes the proposed bytes as they
are. Stored documents are always the proposed bytes; staged documents are derived
from them deterministically (:func:`stage_document`). A rollback republishes the
enforced version that preceded what is live.

Every action, allowed or refused, is appended to the audit log in the same
transaction as its effect. Actions are serialized by one lock per service.

With ``ops_redis`` the service also reaches the Redis that the limiters share for
brownout, bans and top offenders (:mod:`ratemw.control.ops_api` holds those actions).
"""

from __future__ import annotations

import difflib
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ratemw.config.diff import diff_rulesets, format_diff
from ratemw.config.loader import load
from ratemw.config.publish import publish
from ratemw.control import ControlError
from ratemw.control.audit import AuditLog, _now
from ratemw.control.auth import Principal
from ratemw.control.db import Database
from ratemw.control.stages import STAGES, number, stage_document
from ratemw.errors import ConfigError, Problem
from ratemw.ops.shared import Layout

if TYPE_CHECKING:
    from ratemw.store.redis import RedisStore

__all__ = [
    "FORMATS",
    "STAGES",
    "ControlService",
    "Deployment",
    "OpsFailed",
    "OpsUnavailable",
    "ServiceError",
    "Version",
    "stage_document",
]

T = TypeVar("T")
Publisher = Callable[[bytes, str, str], str]

FORMATS = ("yaml", "json", "toml")
_VERSION_COLUMNS = "id, digest, format, document, author, message, created_at, status"
_DEPLOY_COLUMNS = "id, version_id, action, stage, percent, published, actor, created_at"


class ServiceError(ControlError):
    """An action the service refuses; ``status`` is the HTTP status it maps to and
    ``outcome`` what the audit log records."""

    status = 409
    code = "conflict"
    outcome = "refused"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Refused(ServiceError):
    status, code = 403, "forbidden"


class InvalidRequest(ServiceError):
    status, code = 422, "invalid_request"


class InvalidRules(ServiceError):
    status, code = 422, "invalid_rules"


class PublishFailed(ServiceError):
    status, code, outcome = 502, "publish_failed", "failed"


class OpsUnavailable(ServiceError):
    status, code, outcome = 503, "ops_unavailable", "failed"


class OpsFailed(ServiceError):
    status, code, outcome = 502, "ops_failed", "failed"


def problem_json(problem: Problem) -> dict[str, Any]:
    return {
        "file": problem.file, "line": problem.line, "column": problem.column,
        "reason": problem.reason, "severity": problem.severity,
    }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Version:
    """One proposed rules document and where it stands."""

    id: int
    digest: str
    format: str
    document: bytes
    author: str
    message: str
    created_at: str
    status: str
    approvals: tuple[dict[str, str], ...] = field(default=())

    def to_json(self, *, document: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id, "digest": self.digest, "format": self.format,
            "author": self.author, "message": self.message, "created_at": self.created_at,
            "status": self.status, "approvals": list(self.approvals),
        }  # fmt: skip
        if document:
            out["document"] = self.document.decode("utf-8-sig")
        return out


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


class ControlService:
    """Versions, approvals and rollouts on ``db``, published to ``targets``.

    ``required_approvals`` approvals by principals other than the author make a
    version deployable. ``publisher(document, origin, target) -> digest`` defaults to
    :func:`ratemw.config.publish.publish` (the origin's extension names the format);
    ``clock`` returns ISO-8601 timestamps. ``ops_redis`` is the URL of the limiters'
    Redis (any :class:`~ratemw.store.redis.RedisStore` URL) and ``ops_app`` their key
    namespace; without it the operations actions raise :class:`OpsUnavailable`.
    Raises :class:`ControlError` for a bad ``ops_redis`` URL and
    :class:`ratemw.errors.MissingDependency` when it needs redis-py and it is missing.
    """

    def __init__(
        self,
        db: Database,
        targets: Sequence[str] = (),
        *,
        required_approvals: int = 1,
        publisher: Publisher | None = None,
        clock: Callable[[], str] = _now,
        ops_redis: str | None = None,
        ops_app: str = "default",
    ) -> None:
        if required_approvals < 1:
            raise ControlError("at least one approval is required")
        self.ops_layout = Layout(ops_app)
        self._ops_store: RedisStore | None = None
        if ops_redis is not None:
            from ratemw.store.redis import RedisStore

            try:
                # Parses the URL only: the client connects on first use (ops()).
                self._ops_store = RedisStore(
                    ops_redis, connect_timeout_seconds=2.0, command_timeout_seconds=2.0
                )
            except ValueError as exc:
                raise ControlError(f"ops_redis: {exc}") from None
        self.db = db
        self.targets = tuple(targets)
        self.required_approvals = required_approvals
        self.publisher = publisher or publish
        self.clock = clock
        self.audit = AuditLog(db, clock)
        self._lock = threading.Lock()

    # -- the audited action wrapper ----------------------------------------------------

    def act(
        self, actor: Principal, action: str, target: str, body: Callable[[], tuple[T, Any]]
    ) -> T:
        """Run ``body() -> (result, audit detail)`` under the lock, in a transaction with
        its audit entry; a :class:`ServiceError` is audited with its ``outcome`` and raised.
        """
        with self._lock:
            try:
                with self.db.transaction():
                    result, detail = body()
                    self.audit.append(
                        principal=actor.name, role=actor.role, action=action,
                        target=target, outcome="ok", detail=detail,
                    )  # fmt: skip
            except ServiceError as exc:
                outcome = exc.outcome
                detail = {"error": exc.code, "reason": str(exc)}
                detail.update({k: v for k, v in exc.extra.items() if k != "problems"})
                if "problems" in exc.extra:
                    detail["problems"] = len(exc.extra["problems"])
                self.audit.append(
                    principal=actor.name, role=actor.role, action=action,
                    target=target, outcome=outcome, detail=detail,
                )  # fmt: skip
                raise
            return result

    def record(
        self,
        *,
        principal: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        detail: Mapping[str, Any],
    ) -> None:
        """Audit an attempt stopped before the service (a missing token, a wrong role)."""
        with self._lock:
            self.audit.append(
                principal=principal, role=role, action=action, target=target,
                outcome=outcome, detail=detail,
            )  # fmt: skip

    # -- the limiters' Redis ----------------------------------------------------------

    def ops(self, what: str, call: Callable[[Layout, Any], T]) -> T:
        """``call(layout, client)`` on the limiters' Redis; ``what`` names it in errors.

        Raises :class:`OpsUnavailable` without ``ops_redis`` and :class:`OpsFailed` when
        Redis fails (never a bare Redis exception).
        """
        if self._ops_store is None:
            raise OpsUnavailable(
                "the operations endpoints need the limiters' Redis: start ratemw control "
                "with --ops-redis URL"
            )
        try:
            return call(self.ops_layout, self._ops_store.redis())
        except Exception as exc:  # Redis down, timed out or answering nonsense
            raise OpsFailed(
                f"the operations Redis failed to {what}: {type(exc).__name__}: {exc}"
            ) from None

    def close_ops(self) -> None:
        """Close the client of the limiters' Redis, if one was made."""
        if self._ops_store is not None:
            self._ops_store.close()

    # -- reads ------------------------------------------------------------------------

    def _version(self, version_id: int) -> Version:
        rows = self.db.query(f"SELECT {_VERSION_COLUMNS} FROM versions WHERE id = ?", (version_id,))
        if not rows:
            raise NotFound(f"no version {version_id}")
        return self._with_approvals(rows[0])

    def _with_approvals(self, row: tuple[Any, ...]) -> Version:
        vid, digest, fmt, document, author, message, created, status = row
        approvals = self.db.query(
            "SELECT principal, comment, created_at FROM approvals WHERE version_id = ? "
            "ORDER BY created_at, principal",
            (vid,),
        )
        return Version(
            int(vid), str(digest), str(fmt), bytes(document), str(author), str(message),
            str(created), str(status),
            tuple({"principal": p, "comment": c, "created_at": t} for p, c, t in approvals),
        )  # fmt: skip

    def get_version(self, version_id: int) -> Version:
        """Raises :class:`NotFound`."""
        return self._version(version_id)

    def list_versions(self, *, limit: int = 50, before: int | None = None) -> list[Version]:
        """Newest first; ``before`` pages back from a version id."""
        rows = self.db.query(
            f"SELECT {_VERSION_COLUMNS} FROM versions WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        )
        return [self._with_approvals(row) for row in rows]

    def _deployments(self) -> list[Deployment]:
        rows = self.db.query(f"SELECT {_DEPLOY_COLUMNS} FROM deployments ORDER BY id")
        return [
            Deployment(int(i), int(v), str(a), str(s), float(p), json.loads(pub), str(who), str(t))
            for i, v, a, s, p, pub, who, t in rows
        ]

    def deployments(self) -> list[Deployment]:
        """Every publication, oldest first."""
        return self._deployments()

    def status(self) -> dict[str, Any]:
        """What is live, which version is enforced, and the configuration."""
        history = self._deployments()
        live = history[-1] if history else None
        enforced = next((d.version for d in reversed(history) if d.stage == "enforce"), None)
        return {
            "live": live.to_json() if live else None,
            "enforced_version": enforced,
            "targets": list(self.targets),
            "approvals_required": self.required_approvals,
        }

    def diff(self, old_id: int, new_id: int) -> dict[str, Any]:
        """A unified text diff of two versions, plus a rule-level diff when available."""
        old, new = self._version(old_id), self._version(new_id)
        lines = difflib.unified_diff(
            old.document.decode("utf-8-sig").splitlines(keepends=True),
            new.document.decode("utf-8-sig").splitlines(keepends=True),
            fromfile=f"v{old.id}.{old.format}",
            tofile=f"v{new.id}.{new.format}",
        )
        out: dict[str, Any] = {
            "from": old.id,
            "to": new.id,
            "same_rules": old.digest == new.digest,
            "unified": "".join(line if line.endswith("\n") else line + "\n" for line in lines),
        }
        changes = _rule_changes(old, new)
        if changes is not None:
            out["changes"] = changes
        return out

    # -- actions ----------------------------------------------------------------------

    def propose(
        self, actor: Principal, document: bytes, fmt: str = "yaml", message: str = ""
    ) -> tuple[Version, list[Problem]]:
        """Validate and store a new version; returns it and any warnings.

        Raises :class:`InvalidRules` (with every problem) for an invalid document.
        """

        def body() -> tuple[tuple[Version, list[Problem]], Any]:
            if fmt not in FORMATS:
                raise InvalidRequest(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
            # The limiters' own loader: what passes here also compiles and publishes.
            loaded = load(document, f"proposal.{fmt}", fmt, quiet=True)
            ruleset, problems = loaded.ruleset, list(loaded.problems)
            if ruleset is None:
                raise InvalidRules(
                    f"the rules document has {sum(p.severity == 'error' for p in problems)} "
                    "error(s)",
                    problems=[problem_json(p) for p in problems],
                )
            vid = self._next_id("versions", "id")
            self.db.execute(
                f"INSERT INTO versions ({_VERSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vid, ruleset.digest, fmt, document, actor.name, message, self.clock(), "proposed"),
            )
            detail = {"version": vid, "digest": ruleset.digest, "warnings": len(problems)}
            return (self._version(vid), problems), detail

        return self.act(actor, "propose", "versions", body)

    def approve(self, actor: Principal, version_id: int, comment: str = "") -> Version:
        """Record ``actor``'s approval; the author may not approve their own version."""

        def body() -> tuple[Version, Any]:
            version = self._version(version_id)
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
            return self._version(version_id), detail

        return self.act(actor, "approve", f"version:{version_id}", body)

    def rollout(
        self, actor: Principal, version_id: int, stage: str, percent: float | None = None
    ) -> Deployment:
        """Publish ``version_id`` at ``stage``; stages of one version only move forward."""

        def body() -> tuple[Deployment, Any]:
            share = self._check_stage(stage, percent)
            version = self._version(version_id)
            if len(version.approvals) < self.required_approvals and version.status == "proposed":
                raise ServiceError(
                    f"version {version_id} has {len(version.approvals)} of "
                    f"{self.required_approvals} required approval(s)"
                )
            history = self._deployments()
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

        return self.act(actor, "rollout", f"version:{version_id}", body)

    def rollback(self, actor: Principal, reason: str = "") -> Deployment:
        """Republish the enforced version before what is live; the live one is rolled back."""

        def body() -> tuple[Deployment, Any]:
            history = self._deployments()
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
            deployment = self._publish(actor, self._version(target), "rollback", "enforce", 100.0)
            self._set_status(live.version, "rolled_back")
            self._set_status(target, "enforced")
            return deployment, {**deployment.to_json(), "from": live.version, "reason": reason}

        return self.act(actor, "rollback", "rollout", body)

    # -- helpers ----------------------------------------------------------------------

    @staticmethod
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
            raise InvalidRequest(
                "percent must be above 0 and below 100 (use stage shadow or enforce)"
            )
        return float(percent)

    def _publish(
        self, actor: Principal, version: Version, action: str, stage: str, percent: float
    ) -> Deployment:
        document, fmt = stage_document(version, stage, percent)
        label = stage if stage != "percent" else f"{number(percent)}pct"
        origin = f"control-v{version.id}-{label}.{fmt}"
        published: dict[str, str] = {}
        for target in self.targets:
            try:
                published[target] = self.publisher(document, origin, target)
            except ConfigError as exc:
                raise PublishFailed(
                    f"{target} refused version {version.id}: {exc}",
                    target=target,
                    published=published,
                ) from None
            except Exception as exc:  # a target down: nothing changes here
                raise PublishFailed(
                    f"publishing to {target} failed: {type(exc).__name__}: {exc}",
                    target=target,
                    published=published,
                ) from None
        did = self._next_id("deployments", "id")
        created = self.clock()
        self.db.execute(
            f"INSERT INTO deployments ({_DEPLOY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (did, version.id, action, stage, percent, json.dumps(published), actor.name, created),
        )
        return Deployment(did, version.id, action, stage, percent, published, actor.name, created)

    def _next_id(self, table: str, column: str) -> int:
        rows = self.db.query(f"SELECT MAX({column}) FROM {table}")
        return int(rows[0][0] or 0) + 1

    def _set_status(self, version_id: int, status: str, only_if: str | None = None) -> None:
        if only_if is None:
            self.db.execute("UPDATE versions SET status = ? WHERE id = ?", (status, version_id))
        else:
            self.db.execute(
                "UPDATE versions SET status = ? WHERE id = ? AND status = ?",
                (status, version_id, only_if),
            )


def _rule_changes(old: Version, new: Version) -> list[str] | None:
    """Rule-level changes (:func:`ratemw.config.diff.format_diff`), None if unparsable."""
    before = load(old.document, f"v{old.id}.{old.format}", old.format, quiet=True).ruleset
    after = load(new.document, f"v{new.id}.{new.format}", new.format, quiet=True).ruleset
    if before is None or after is None:
        return None
    return format_diff(diff_rulesets(before, after))
