"""The audit log with filters, and "Verify chain" (what ``ratemw audit verify`` says)."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from ratemw.control.audit import _COLUMNS, AuditEntry, _entry, verify
from ratemw.control.errors import InvalidRequest
from ratemw.control.http import _path_id
from ratemw.control.ui.web import Console, Ctx, Page

__all__ = ["OUTCOMES", "audit_page", "filtered_entries", "verify_page"]

OUTCOMES = ("ok", "refused", "failed", "forbidden", "unauthenticated")
_PAGE = 100
_NAME = re.compile(r"[\w.:@/ -]{1,200}")


def _moment(text: str, name: str) -> str | None:
    """A ``datetime-local`` value (UTC) as the audit log's ISO 8601 text, for comparing."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text[:40])
    except ValueError:
        raise InvalidRequest(f"{name} must be a date and time such as 2025-01-31T09:30") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")


def filtered_entries(
    console: Console, filters: dict[str, str], before: int | None, limit: int = _PAGE
) -> list[AuditEntry]:
    """Newest first. A thin query beside :meth:`AuditLog.entries`, which has no filters
    (they belong there)."""
    where, params = ["seq < ?"], [before if before is not None else 2**62]
    for key in ("principal", "action", "outcome"):
        if filters.get(key):
            where.append(f"{key} = ?")
            params.append(filters[key])  # type: ignore[arg-type]
    if filters.get("since"):
        where.append("at >= ?")
        params.append(filters["since"])  # type: ignore[arg-type]
    if filters.get("until"):
        where.append("at < ?")
        params.append(filters["until"])  # type: ignore[arg-type]
    rows = console.service.db.query(
        f"SELECT {_COLUMNS} FROM audit_log WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
        (*params, limit),
    )
    return [_entry(row) for row in rows]


def audit_page(console: Console, ctx: Ctx) -> Page:
    shown: dict[str, str] = {k: ctx.arg(k).strip() for k in
                             ("principal", "action", "outcome", "since", "until")}  # fmt: skip
    for key in ("principal", "action"):
        if shown[key] and not _NAME.fullmatch(shown[key]):
            raise InvalidRequest(f"{key}: letters, digits and . : @ / - only")
    if shown["outcome"] and shown["outcome"] not in OUTCOMES:
        raise InvalidRequest(f"outcome must be one of {', '.join(OUTCOMES)}")
    filters: dict[str, str] = {k: v for k, v in shown.items() if k not in ("since", "until")}
    for key in ("since", "until"):
        moment = _moment(shown[key], key)
        if moment is not None:
            filters[key] = moment
    before = _path_id("before", ctx.arg("before")) if ctx.arg("before") else None
    entries = filtered_entries(console, filters, before, _PAGE + 1)
    query = urlencode({k: v for k, v in shown.items() if v})
    rows: list[dict[str, Any]] = [e.to_json() for e in entries[:_PAGE]]
    return Page("audit.html", {
        "title": "Audit log", "nav": "audit", "entries": rows, "filters": shown,
        "outcomes": OUTCOMES, "query": query,
        "older": entries[_PAGE - 1].seq if len(entries) > _PAGE else None,
        "verification": None,
    })  # fmt: skip


def verify_page(console: Console, ctx: Ctx) -> Page:
    result = verify(console.service.db)
    page = audit_page(console, ctx)
    page.context.update(
        verification={"ok": result.ok, "text": str(result)},
        title="Audit log: chain verified" if result.ok else "Audit log: broken",
    )
    return page
