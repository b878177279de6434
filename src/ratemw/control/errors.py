"""The errors a control-plane action raises, each with its HTTP status and audit outcome.

An action (:mod:`ratemw.control.versions`, :mod:`~ratemw.control.rollout`,
:mod:`~ratemw.control.ops_api`) raises one of these; the REST routes render it as an
``application/problem+json`` answer with :attr:`ServiceError.status` and
:attr:`ServiceError.code`, and the audit log records :attr:`ServiceError.outcome`.
"""

from __future__ import annotations

from typing import Any

from ratemw.control import ControlError
from ratemw.errors import Problem

__all__ = [
    "Forbidden",
    "InternalError",
    "InvalidRequest",
    "InvalidRules",
    "NotFound",
    "OpsFailed",
    "OpsUnavailable",
    "PreviewUnavailable",
    "PublishFailed",
    "Refused",
    "ServiceError",
    "problem_json",
]


class ServiceError(ControlError):
    """An action the service refuses; ``status`` is the HTTP status it maps to and
    ``outcome`` what the audit log records."""

    status = 409
    code = "conflict"
    outcome = "refused"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.extra = extra
        self.audited = False  # set by ServiceCore.act once it is in the audit log


class NotFound(ServiceError):
    status, code = 404, "not_found"


class Refused(ServiceError):
    status, code = 403, "forbidden"


class Forbidden(Refused):
    """The principal's role does not grant the action's permission."""

    outcome = "forbidden"


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


class PreviewUnavailable(ServiceError):
    """No recording is configured (``ratemw control --traffic``), or it cannot be used."""

    status, code, outcome = 503, "preview_unavailable", "failed"


class InternalError(ServiceError):
    """Anything else that went wrong inside an action: audited, answered 500."""

    status, code, outcome = 500, "internal_error", "failed"


def problem_json(problem: Problem) -> dict[str, Any]:
    """A rules problem as the API shows it (the ``Problem`` schema)."""
    return {
        "file": problem.file, "line": problem.line, "column": problem.column,
        "reason": problem.reason, "severity": problem.severity,
    }  # fmt: skip
