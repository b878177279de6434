"""The control service: every resource's actions on one shared state.

:class:`ControlService` is what ``ratemw control`` runs and what its REST routes (and
any other front end) call: the versions (:mod:`ratemw.control.versions`), approvals
and rollouts (:mod:`ratemw.control.rollout`), previews (:mod:`ratemw.control.preview_api`)
and operations
(:mod:`ratemw.control.ops_api`) actions over :class:`~ratemw.control.core.ServiceCore`.
Every action is authorized, and appended to the audit log in the same transaction as
its effect (:meth:`~ratemw.control.core.ServiceCore.act`); actions are serialized by
one lock per service and, across instances on one PostgreSQL database, by the
transaction's advisory lock (:meth:`ratemw.control.db.Database.transaction`).
"""

from __future__ import annotations

from ratemw.control.ops_api import OpsActions
from ratemw.control.preview_api import PreviewActions

__all__ = ["ControlService"]


class ControlService(PreviewActions, OpsActions):
    """Versions, approvals and rollouts on ``db``, published to ``targets``; what-if
    previews of the recording at ``traffic``; brownout, bans and top offenders in the
    limiters' Redis (``ops_redis``).

    The arguments are :class:`~ratemw.control.preview_api.PreviewActions`' and
    :class:`~ratemw.control.core.ServiceCore`'s.
    """
