"""The hash-chained audit log: append entries, read them, verify the chain.

Each entry stores the hash of the entry before it (``prev_hash``; the first entry
links to :data:`GENESIS`) and its own SHA-256 over a canonical JSON of its fields,
that link included. Editing an entry changes its hash; deleting one breaks the next
entry's link or the sequence; so :func:`verify` names the first entry that does not
fit. Removing the newest entries leaves a shorter valid chain: keep the head hash
that verification prints somewhere else if truncation matters.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ratemw.control.db import Database

__all__ = ["GENESIS", "AuditEntry", "AuditLog", "Verification", "entry_hash", "verify"]

GENESIS = "0" * 64
_COLUMNS = "seq, at, principal, role, action, target, outcome, detail, prev_hash, hash"


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces, UTF-8 kept: one text for equal data."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def entry_hash(
    seq: int,
    at: str,
    principal: str,
    role: str,
    action: str,
    target: str,
    outcome: str,
    detail: str,
    prev_hash: str,
) -> str:
    """SHA-256 hex of an entry's canonical JSON (``detail`` as its stored text)."""
    content = {
        "seq": seq, "at": at, "principal": principal, "role": role, "action": action,
        "target": target, "outcome": outcome, "detail": detail, "prev_hash": prev_hash,
    }  # fmt: skip
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One recorded action: who, what, on which target, and how it ended."""

    seq: int
    at: str
    principal: str
    role: str
    action: str
    target: str
    outcome: str
    detail: str  # canonical JSON text
    prev_hash: str
    hash: str

    def to_json(self) -> dict[str, Any]:
        try:
            detail: Any = json.loads(self.detail)
        except ValueError:
            detail = self.detail
        return {
            "seq": self.seq, "at": self.at, "principal": self.principal, "role": self.role,
            "action": self.action, "target": self.target, "outcome": self.outcome,
            "detail": detail, "prev_hash": self.prev_hash, "hash": self.hash,
        }  # fmt: skip


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


class AuditLog:
    """Appends to and reads ``audit_log``; ``clock`` returns an ISO-8601 timestamp."""

    def __init__(self, db: Database, clock: Callable[[], str] = _now) -> None:
        self.db = db
        self.clock = clock

    def append(
        self,
        *,
        principal: str,
        role: str,
        action: str,
        target: str,
        outcome: str,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Add one entry linked to the newest; runs in the caller's transaction if any."""
        with nullcontext() if self.db.in_transaction else self.db.transaction():
            # Read under the transaction's write lock: another instance appending at
            # the same moment waits, so two entries never share a predecessor.
            head = self.db.query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq, prev = (int(head[0][0]) + 1, str(head[0][1])) if head else (1, GENESIS)
            text = canonical_json(dict(detail or {}))
            at = self.clock()
            digest = entry_hash(seq, at, principal, role, action, target, outcome, text, prev)
            values = (seq, at, principal, role, action, target, outcome, text, prev, digest)
            self.db.execute(
                f"INSERT INTO audit_log ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values
            )
        return AuditEntry(*values)

    def entries(self, *, after: int = 0, limit: int = 100) -> list[AuditEntry]:
        """Entries with ``seq > after``, oldest first, at most ``limit``."""
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
        return [_entry(row) for row in rows]


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    seq, at, principal, role, action, target, outcome, detail, prev, digest = row
    return AuditEntry(
        int(seq), str(at), str(principal), str(role), str(action), str(target),
        str(outcome), str(detail), str(prev), str(digest),
    )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of :func:`verify`: ``broken`` is the first bad entry's seq, or None."""

    entries: int
    head: str
    broken: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "entries": self.entries, "head": self.head,
            "broken": self.broken, "reason": self.reason,
        }  # fmt: skip

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.entries} audit entries, chain head {self.head}"
        return f"broken: audit entry {self.broken}: {self.reason}"


def verify(db: Database) -> Verification:
    """Recompute the chain from the first entry; stop at the first that does not fit."""
    rows = db.query(f"SELECT {_COLUMNS} FROM audit_log ORDER BY seq")
    prev, expected, count = GENESIS, 1, 0
    for row in rows:
        entry = _entry(row)
        if entry.seq != expected:
            return Verification(
                count,
                prev,
                expected,
                f"missing: the log goes from entry {expected - 1} to entry {entry.seq}",
            )
        if entry.prev_hash != prev:
            before = f"entry {entry.seq - 1}" if entry.seq > 1 else "the start of the log"
            return Verification(
                count,
                prev,
                entry.seq,
                f"its previous-entry hash does not match {before}: an entry before it "
                "was edited or deleted",
            )
        fields = (entry.seq, entry.at, entry.principal, entry.role, entry.action, entry.target)
        recomputed = entry_hash(*fields, entry.outcome, entry.detail, entry.prev_hash)
        if recomputed != entry.hash:
            return Verification(
                count, prev, entry.seq, "its content does not match its hash: it was edited"
            )
        prev, expected, count = entry.hash, expected + 1, count + 1
    return Verification(count, prev)
