"""Versions: propose a rules document, list and read versions, diff two of them.

A version is a proposed rules document, stored as the proposed bytes, and where it
stands (``proposed`` ... ``enforced``; :mod:`ratemw.control.rollout` moves it).
:class:`VersionActions` holds the actions; :data:`ENDPOINTS` routes them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ratemw.config.diff import diff_rulesets, format_diff
from ratemw.config.loader import load
from ratemw.control.auth import Principal
from ratemw.control.core import ServiceCore
from ratemw.control.errors import InvalidRequest, InvalidRules, NotFound, problem_json
from ratemw.control.http import Call, Endpoint
from ratemw.errors import ConfigError, Problem
from ratemw.rules.model import RuleSet

__all__ = ["ENDPOINTS", "FORMATS", "Version", "VersionActions"]

FORMATS = ("yaml", "json", "toml")
_COLUMNS = "id, digest, format, document, author, message, created_at, status"
_RAW_TYPES = {
    "application/yaml": "yaml", "application/x-yaml": "yaml", "text/yaml": "yaml",
    "text/x-yaml": "yaml", "application/toml": "toml", "text/toml": "toml",
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


class VersionActions(ServiceCore):
    """Propose, list, read and diff versions."""

    def get_version(self, version_id: int) -> Version:
        """Raises :class:`NotFound`."""
        if not -(2**63) <= version_id < 2**63:  # beyond SQLite's INTEGER: nothing there
            raise NotFound(f"no version {version_id}")
        rows = self.db.query(f"SELECT {_COLUMNS} FROM versions WHERE id = ?", (version_id,))
        if not rows:
            raise NotFound(f"no version {version_id}")
        return self._with_approvals(rows[0])

    def list_versions(self, *, limit: int = 50, before: int | None = None) -> list[Version]:
        """Newest first; ``before`` pages back from a version id."""
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM versions WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else 2**62, limit),
        )
        return [self._with_approvals(row) for row in rows]

    def diff(self, old_id: int, new_id: int) -> dict[str, Any]:
        """A unified text diff of two versions, plus a rule-level diff when available."""
        old, new = self.get_version(old_id), self.get_version(new_id)
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

    def propose(
        self, actor: Principal, document: bytes, fmt: str = "yaml", message: str = ""
    ) -> tuple[Version, list[Problem]]:
        """Validate and store a new version; returns it and any warnings.

        Raises :class:`InvalidRules` (with every problem) for an invalid document.
        """

        def body() -> tuple[tuple[Version, list[Problem]], Any]:
            if fmt not in FORMATS:
                raise InvalidRequest(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
            ruleset, problems = _validate(document, fmt)
            if ruleset is None:
                raise InvalidRules(
                    f"the rules document has {sum(p.severity == 'error' for p in problems)} "
                    "error(s)",
                    problems=[problem_json(p) for p in problems],
                )
            vid = self._next_id("versions", "id")
            self.db.execute(
                f"INSERT INTO versions ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vid, ruleset.digest, fmt, document, actor.name, message, self.clock(), "proposed"),
            )
            detail = {"version": vid, "digest": ruleset.digest, "warnings": len(problems)}
            return (self.get_version(vid), problems), detail

        return self.act(actor, "propose", "propose", "versions", body)

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


def _validate(document: bytes, fmt: str) -> tuple[RuleSet | None, list[Problem]]:
    """The limiters' own loader (what passes here also compiles and publishes), with
    every way it can fail on hostile input (nesting, aliases, sizes) a list of problems.
    """
    origin = f"proposal.{fmt}"
    try:
        loaded = load(document, origin, fmt, quiet=True)
    except ConfigError as exc:
        return None, list(exc.problems) or [Problem(origin, 0, 0, "the document is invalid")]
    except RecursionError:
        return None, [Problem(origin, 0, 0, "the document is nested too deeply to parse")]
    except MemoryError:
        return None, [Problem(origin, 0, 0, "the document is too large to parse")]
    except Exception as exc:  # a parser's own error type: still the document's fault
        reason = f"the document cannot be parsed: {type(exc).__name__}: {exc}"
        return None, [Problem(origin, 0, 0, reason[:500])]
    return loaded.ruleset, list(loaded.problems)


def _rule_changes(old: Version, new: Version) -> list[str] | None:
    """Rule-level changes (:func:`ratemw.config.diff.format_diff`), None if unparsable."""
    before, _ = _validate(old.document, old.format)
    after, _ = _validate(new.document, new.format)
    if before is None or after is None:
        return None
    return format_diff(diff_rulesets(before, after))


# -- routes -----------------------------------------------------------------------------


def _list_versions(svc: VersionActions, call: Call) -> tuple[int, Any]:
    limit = max(1, min(call.int_query("limit", 50) or 50, 500))
    versions = svc.list_versions(limit=limit, before=call.int_query("before", None))
    return 200, {"versions": [v.to_json() for v in versions]}


def _propose(svc: VersionActions, call: Call) -> tuple[int, Any]:
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media in _RAW_TYPES:
        document, fmt = call.body, _RAW_TYPES[media]
        message = call.query.get("message", "")
    else:
        data = call.json()
        if not isinstance(data.get("document"), str):
            raise InvalidRequest("'document' (the rules file's text) is required")
        document = call.text(data, "document").encode("utf-8")
        fmt, message = call.text(data, "format", "yaml"), call.text(data, "message")
    version, warnings = svc.propose(call.principal, document, fmt, message)
    return 201, {"version": version.to_json(), "warnings": [problem_json(p) for p in warnings]}


def _get_version(svc: VersionActions, call: Call) -> tuple[int, Any]:
    return 200, {"version": svc.get_version(call.params["id"]).to_json(document=True)}


def _diff(svc: VersionActions, call: Call) -> tuple[int, Any]:
    old, new = call.id_query("from"), call.id_query("to")
    if old is None or new is None:
        raise InvalidRequest("query parameters 'from' and 'to' (version ids) are required")
    return 200, svc.diff(old, new)


_PAGE = (("limit", "integer", "at most this many (1..500, default 50)"),
         ("before", "integer", "only versions with a smaller id"))  # fmt: skip
ENDPOINTS: tuple[Endpoint[VersionActions], ...] = (
    Endpoint("GET", "/v1/versions", "listVersions", "read", "List versions, newest first",
             _list_versions, (200, "VersionList"), query=_PAGE),
    Endpoint("POST", "/v1/versions", "proposeVersion", "propose",
             "Propose a rules document (validated; 422 lists every problem with its line)",
             _propose, (201, "Proposed"), body="Proposal", errors=(422,), body_required=True,
             document_body=True),
    Endpoint("GET", "/v1/versions/{id:int}", "getVersion", "read",
             "One version with its document", _get_version, (200, "VersionDocument"),
             errors=(404,)),
    Endpoint("GET", "/v1/diff", "diffVersions", "read", "Diff two versions", _diff,
             (200, "Diff"),
             query=(("from", "integer", "the older version id"),
                    ("to", "integer", "the newer version id")),
             errors=(404, 422)),
)  # fmt: skip
