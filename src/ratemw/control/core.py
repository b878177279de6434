"""What every control-plane resource shares: the database, the audit log, the lock,
the publication targets, the limiters' Redis, and :meth:`ServiceCore.act`.

:meth:`ServiceCore.act` is the one place where an action is authorized and audited:
it checks the principal's role, runs the action under the service's lock in one
transaction with its audit entry, and audits a refusal or a failure as well. The
resources (:mod:`ratemw.control.versions`, :mod:`~ratemw.control.rollout`,
:mod:`~ratemw.control.ops_api`) are classes over this one, assembled into
:class:`ratemw.control.service.ControlService`. Nothing here knows HTTP.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ratemw.config.publish import publish
from ratemw.control import ControlError
from ratemw.control.audit import AuditLog, _now
from ratemw.control.auth import Principal
from ratemw.control.db import Database
from ratemw.control.errors import Forbidden, InternalError, OpsFailed, OpsUnavailable, ServiceError
from ratemw.ops.shared import Layout
from ratemw.redact import redact, scrub

if TYPE_CHECKING:
    from ratemw.store.redis import RedisStore

__all__ = ["Publisher", "ServiceCore"]

T = TypeVar("T")
Publisher = Callable[[bytes, str, str], str]


class ServiceCore:
    """The state the resources share, on ``db``, publishing to ``targets``.

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
        # Every URL with a possible credential: scrub() masks them in any message.
        self._secret_urls = (*targets, *([ops_redis] if ops_redis else []), db.url)
        if ops_redis is not None:
            from ratemw.store.redis import RedisStore

            try:
                # Parses the URL only: the client connects on first use (ops()).
                self._ops_store = RedisStore(
                    ops_redis, connect_timeout_seconds=2.0, command_timeout_seconds=2.0
                )
            except ValueError as exc:
                raise ControlError(self.scrub(f"ops_redis: {exc}")) from None
        self.db = db
        # Targets are shown (status, deployments, errors, audit) only redacted.
        self._target_urls = tuple(targets)
        self.targets = tuple(redact(t) for t in targets)
        self.required_approvals = required_approvals
        self.publisher = publisher or publish
        self.clock = clock
        self.audit = AuditLog(db, clock)
        self._lock = threading.Lock()

    # -- the authorized, audited action -----------------------------------------------

    def act(
        self,
        actor: Principal,
        permission: str,
        action: str,
        target: str,
        body: Callable[[], tuple[T, Any]],
    ) -> T:
        """Run ``body() -> (result, audit detail)`` for ``actor`` under the lock, in a
        transaction with its audit entry.

        The lock orders this process's actions; the transaction's write lock
        (:meth:`ratemw.control.db.Database.transaction`) orders them with those of
        other instances on the same database, so ``body`` reads what it changes
        (ids, approvals, the live deployment) with no other writer in between.

        ``permission`` (a key of :data:`ratemw.control.auth.PERMISSIONS`) must be
        granted by the actor's role, else :class:`Forbidden`. A :class:`ServiceError`
        is audited with its ``outcome`` and raised; any other exception is audited as
        ``failed`` and raised as :class:`InternalError` (its message scrubbed of
        credentials).
        """
        with self._lock:
            try:
                if not actor.may(permission):
                    raise Forbidden(f"role {actor.role} may not {permission}")
                try:
                    with self.db.transaction():
                        result, detail = body()
                        self.audit.append(
                            principal=actor.name, role=actor.role, action=action,
                            target=target, outcome="ok", detail=self.scrub_detail(detail),
                        )  # fmt: skip
                except ServiceError:
                    raise
                except Exception as exc:  # a bug or a broken database: still audited
                    raise InternalError(
                        self.scrub(f"{action} failed: {type(exc).__name__}: {exc}")
                    ) from exc
            except ServiceError as exc:
                detail = {"error": exc.code, "reason": str(exc)}
                detail.update({k: v for k, v in exc.extra.items() if k != "problems"})
                if "problems" in exc.extra:
                    detail["problems"] = len(exc.extra["problems"])
                self.audit.append(
                    principal=actor.name, role=actor.role, action=action,
                    target=target, outcome=exc.outcome, detail=self.scrub_detail(detail),
                )  # fmt: skip
                exc.audited = True
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
        """Audit an attempt stopped before an action (a missing token, a wrong role, a
        body too large)."""
        with self._lock:
            self.audit.append(
                principal=principal, role=role, action=action, target=self.scrub(target),
                outcome=outcome, detail=self.scrub_detail(detail),
            )  # fmt: skip

    def scrub(self, text: str) -> str:
        """``text`` with the credentials of the service's URLs masked."""
        return scrub(text, self._secret_urls)

    def scrub_detail(self, value: Any) -> Any:
        """An audit detail with every string scrubbed (:meth:`scrub`)."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self.scrub(str(k)): self.scrub_detail(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub_detail(v) for v in value]
        return value

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
                self.scrub(f"the operations Redis failed to {what}: {type(exc).__name__}: {exc}")
            ) from None

    def close_ops(self) -> None:
        """Close the client of the limiters' Redis, if one was made."""
        if self._ops_store is not None:
            self._ops_store.close()

    # -- small SQL helpers the resources share -----------------------------------------

    def _next_id(self, table: str, column: str) -> int:
        # Safe only inside a transaction: its write lock keeps the maximum ours.
        rows = self.db.query(f"SELECT MAX({column}) FROM {table}")
        return int(rows[0][0] or 0) + 1
