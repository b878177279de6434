"""What-if previews of versions (docs/replay.md, docs/control-plane.md).

A preview replays the recording configured with ``ratemw control --traffic PATH``
against a version (the candidate) and the enforced version (the baseline) with
:func:`ratemw.replay.preview`, and keeps the report and its plot with the version, one
per (version, baseline, recording digest): asking again for the same three answers
from the database. :class:`PreviewActions` holds the actions; :data:`ENDPOINTS` routes
them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ratemw.control import DEFAULT_MAX_TRAFFIC_BYTES
from ratemw.control.auth import Principal
from ratemw.control.db import Database
from ratemw.control.errors import InvalidRules, NotFound, PreviewUnavailable, ServiceError
from ratemw.control.http import Call, Endpoint
from ratemw.control.rollout import RolloutActions
from ratemw.control.versions import Version, _validate
from ratemw.replay import preview
from ratemw.replay.reader import RecordingError, files_of, read_recording
from ratemw.rules.model import RuleSet

__all__ = [
    "DEFAULT_MAX_ARRIVALS",
    "DEFAULT_MAX_TRAFFIC_BYTES",
    "ENDPOINTS",
    "PreviewActions",
    "StoredPreview",
    "headline",
]

#: the most arrivals a preview replays (about 15 s on two cores, docs/replay.md)
DEFAULT_MAX_ARRIVALS = 1_000_000
_COLUMNS = "id, version_id, baseline_id, recording, ok, report, plot, created_at"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StoredPreview:
    """One preview as stored: the report (``ratemw-replay-report/1``) and its SVG plot
    (empty when the self-check refused), for a version against a baseline and a
    recording (the SHA-256 of its files)."""

    id: int
    version: int
    baseline: int
    recording: str
    ok: bool
    report: dict[str, Any]
    plot: str
    created_at: str
    cached: bool = False

    @property
    def headline(self) -> str | None:
        return headline(self.report)

    @property
    def reasons(self) -> list[str]:
        return list(self.report.get("self_check", {}).get("reasons", []))

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id, "version": self.version, "baseline": self.baseline,
            "recording": self.recording, "ok": self.ok, "cached": self.cached,
            "created_at": self.created_at, "headline": self.headline,
            "reasons": self.reasons, "report": self.report,
        }  # fmt: skip


class PreviewActions(RolloutActions):
    """Preview versions against the recording at ``traffic`` (none: 503).

    The recording's files (the live file and its rotations) may hold ``max_traffic_bytes``
    together and ``max_arrivals`` arrivals; the other arguments are
    :class:`~ratemw.control.core.ServiceCore`'s.
    """

    def __init__(
        self,
        db: Database,
        targets: Any = (),
        *,
        traffic: str | Path | None = None,
        max_traffic_bytes: int = DEFAULT_MAX_TRAFFIC_BYTES,
        max_arrivals: int = DEFAULT_MAX_ARRIVALS,
        **options: Any,
    ) -> None:
        super().__init__(db, targets, **options)
        self.traffic = Path(traffic) if traffic else None
        self.max_traffic_bytes = max_traffic_bytes
        self.max_arrivals = max_arrivals
        # Replays are CPU-bound: one at a time, and a second asker finds the first's result.
        self._replaying = threading.Lock()

    def stored_preview(self, version_id: int) -> StoredPreview | None:
        """The latest preview of ``version_id``, against any baseline and recording."""
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM previews WHERE version_id = ? ORDER BY id DESC LIMIT 1",
            (version_id,),
        )
        return _stored(rows[0]) if rows else None

    def preview(self, actor: Principal, version_id: int) -> StoredPreview:
        """Replay the recording against ``version_id`` and the enforced version (or
        return the stored preview of the same three). A self-check refusal is a result
        (``ok`` false, with its reasons); raises :class:`NotFound`,
        :class:`PreviewUnavailable` (no usable recording) and :class:`ServiceError`
        (nothing enforced)."""
        version = self.get_version(version_id)
        enforced = self.status()["enforced_version"]
        if enforced is None:
            raise ServiceError(
                "nothing is enforced yet: a preview compares a version with the enforced one"
            )
        with self._replaying:
            files, digest = self._recording()
            found = self._find(version_id, int(enforced), digest)
            if found is not None:
                return dataclasses.replace(found, cached=True)
            candidate = _ruleset(version)
            baseline = _ruleset(self.get_version(int(enforced)))
            try:
                recording = read_recording(files, self.max_arrivals)
            except RecordingError as exc:
                raise PreviewUnavailable(f"the recording cannot be used: {exc}") from None
            result = preview(candidate, recording, baseline)
            title = f"version {version_id} (solid) against version {enforced} (dashed)"
            plot = result.plot(title) if result.ok else ""

        def body() -> tuple[StoredPreview, Any]:
            again = self._find(version_id, int(enforced), digest)  # another instance's
            if again is not None:
                return dataclasses.replace(again, cached=True), {"cached": True}
            pid = self._next_id("previews", "id")
            self.db.execute(
                f"INSERT INTO previews ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (pid, version_id, enforced, digest, int(result.ok),
                 json.dumps(result.report, sort_keys=True), plot, self.clock()),
            )  # fmt: skip
            stored = self._find(version_id, int(enforced), digest)
            assert stored is not None
            detail = {"baseline": enforced, "recording": digest[:16], "ok": result.ok,
                      "flips": result.report.get("flips", {}).get("total")}  # fmt: skip
            return stored, detail

        return self.act(actor, "read", "previewVersion", f"version:{version_id}", body)

    def _find(self, version_id: int, baseline: int, digest: str) -> StoredPreview | None:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM previews WHERE version_id = ? AND baseline_id = ? "
            "AND recording = ?",
            (version_id, baseline, digest),
        )
        return _stored(rows[0]) if rows else None

    def _recording(self) -> tuple[list[Path], str]:
        """The recording's files, oldest first, and the SHA-256 of their names and bytes."""
        if self.traffic is None:
            raise PreviewUnavailable(
                "no recording is configured: record traffic with Limiter(..., record=...) "
                "and start ratemw control with --traffic PATH (docs/replay.md)"
            )
        files = files_of(self.traffic)
        if not files:
            raise PreviewUnavailable(f"no recording file found ({self.traffic.name})")
        try:
            size = sum(f.stat().st_size for f in files)
            if size > self.max_traffic_bytes:
                raise PreviewUnavailable(
                    f"the recording is {size} bytes, more than the {self.max_traffic_bytes} "
                    "a preview reads (ratemw control --traffic-max-bytes)"
                )
            h = hashlib.sha256()
            left = self.max_traffic_bytes  # the live file may grow while it is read
            for f in files:
                h.update(f.name.encode("utf-8", "replace") + b"\0")
                with f.open("rb") as raw:
                    while left > 0 and (chunk := raw.read(min(_CHUNK, left))):
                        h.update(chunk)
                        left -= len(chunk)
                h.update(b"\0")
        except OSError as exc:
            raise PreviewUnavailable(f"cannot read the recording: {exc.strerror or exc}") from None
        return files, h.hexdigest()


def _ruleset(version: Version) -> RuleSet:
    ruleset, _ = _validate(version.document, version.format)
    if ruleset is None:  # stored versions were valid when proposed: a newer loader disagrees
        raise InvalidRules(f"version {version.id} no longer validates")
    return ruleset


def _stored(row: tuple[Any, ...]) -> StoredPreview:
    pid, vid, baseline, recording, ok, report, plot, created = row
    return StoredPreview(int(pid), int(vid), int(baseline), str(recording), bool(ok),
                         json.loads(report), str(plot), str(created))  # fmt: skip


# -- the headline -----------------------------------------------------------------------


def headline(report: dict[str, Any]) -> str | None:
    """One sentence an approver reads first: "this change would reject 3.2 % of search
    for free users, 41 identities, mostly between 14:00 and 14:10 UTC" (None when the
    self-check refused)."""
    if not report.get("self_check", {}).get("ok") or "flips" not in report:
        return None
    flips = report["flips"]
    if not flips["total"]:
        return "this change would decide every recorded request as the enforced version does"
    a2r = [r for r in report["rules"] if r["allowed_to_rejected"]]
    r2a = [r for r in report["rules"] if r["rejected_to_allowed"]]
    verb, kind, rows = ("reject", "allowed_to_rejected", a2r) if a2r else (
        "admit", "rejected_to_allowed", r2a)  # fmt: skip
    top = max(rows, key=lambda r: (r[kind], r["rule"]), default=None)
    if top is None:  # flips with no rule to name (a store error or a brownout)
        return f"this change would decide {flips['total']} recorded request(s) differently"
    tier = f" for {top['tier']} users" if top["tier"] else ""
    n = top["identities"]
    text = (
        f"this change would {verb} {100 * top[f'share_{kind}']:.1f} % of {top['rule']}{tier}"
        f", {n} identit{'y' if n == 1 else 'ies'}{_span(report['minutes'], flips['total'])}"
    )
    others = len(a2r) + len(r2a) - 1
    if others:
        text += f" (and {others} more rule{'s' if others > 1 else ''} change)"
    sample = report["recording"]["sample"]
    if sample < 1:
        text += f", in a {100 * sample:g} % sample"
    return text


def _span(minutes: list[dict[str, Any]], total: int) -> str:
    """The clause naming when: the span of the fewest busiest minutes that hold at least
    half the flips (empty when the listed minutes hold less)."""
    held, picked = 0, []
    for m in minutes:  # busiest first
        picked.append(datetime.strptime(m["minute"], "%Y-%m-%dT%H:%MZ"))
        held += m["flips"]
        if 2 * held >= total:
            break
    if not picked or 2 * held < total:
        return ""
    first, last = min(picked), max(picked) + timedelta(minutes=1)
    return f", mostly between {first:%H:%M} and {last:%H:%M} UTC"


# -- routes -----------------------------------------------------------------------------


def _preview(svc: PreviewActions, call: Call) -> tuple[int, Any]:
    return 200, {"preview": svc.preview(call.principal, call.params["id"]).to_json()}


def _get_preview(svc: PreviewActions, call: Call) -> tuple[int, Any]:
    vid = call.params["id"]
    svc.get_version(vid)  # 404 for no such version
    found = svc.stored_preview(vid)
    if found is None:
        raise NotFound(f"version {vid} has no preview yet: POST /v1/versions/{vid}/preview")
    return 200, {"preview": found.to_json()}


ENDPOINTS: tuple[Endpoint[PreviewActions], ...] = (
    Endpoint("POST", "/v1/versions/{id:int}/preview", "previewVersion", "read",
             "Replay the recording (--traffic) against a version and the enforced one: "
             "the what-if report, or the self-check's refusal", _preview,
             (200, "PreviewOnly"), errors=(404, 409, 503)),
    Endpoint("GET", "/v1/versions/{id:int}/preview", "getPreview", "read",
             "The latest stored preview of a version", _get_preview, (200, "PreviewOnly"),
             errors=(404,)),
)  # fmt: skip
