"""The audit log's routes: read the entries, verify the hash chain.

The log itself (appending, reading, verifying) is :mod:`ratemw.control.audit`; every
action writes to it through :meth:`ratemw.control.core.ServiceCore.act`.
"""

from __future__ import annotations

from typing import Any

from ratemw.control.audit import verify
from ratemw.control.core import ServiceCore
from ratemw.control.http import Call, Endpoint

__all__ = ["ENDPOINTS"]


def _audit(svc: ServiceCore, call: Call) -> tuple[int, Any]:
    after = call.int_query("after", 0) or 0
    limit = max(1, min(call.int_query("limit", 100) or 100, 1000))
    return 200, {"entries": [e.to_json() for e in svc.audit.entries(after=after, limit=limit)]}


def _verify(svc: ServiceCore, call: Call) -> tuple[int, Any]:
    return 200, verify(svc.db).to_json()


ENDPOINTS: tuple[Endpoint[ServiceCore], ...] = (
    Endpoint("GET", "/v1/audit", "readAudit", "read", "Read the audit log, oldest first",
             _audit, (200, "AuditList"),
             query=(("after", "integer", "only entries with a larger seq"),
                    ("limit", "integer", "at most this many (1..1000, default 100)"))),
    Endpoint("GET", "/v1/audit/verify", "verifyAudit", "read",
             "Recompute the audit hash chain", _verify, (200, "Verification")),
)  # fmt: skip
