"""One what-if preview: read, self-check against the baseline, replay the candidate,
report. What the ``ratemw replay`` command (and, later, the control plane) calls."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ratemw.replay.check import DEFAULT_TOLERANCE, precheck, self_check
from ratemw.replay.engine import Run, replay, stand_ins
from ratemw.replay.plot import svg
from ratemw.replay.reader import (
    MAX_ARRIVALS,
    Recording,
    files_of,
    paused_gc,
    read_recording,
)
from ratemw.replay.report import build_report
from ratemw.rules.model import RuleSet

__all__ = ["Preview", "preview"]


@dataclass(slots=True)
class Preview:
    """The outcome of :func:`preview`: the report (see ``report.SCHEMA``) and the runs."""

    report: dict[str, Any]
    recording: Recording
    before: Run | None
    after: Run | None

    @property
    def ok(self) -> bool:
        return bool(self.report["self_check"]["ok"])

    def plot(self, title: str = "ratemw replay: before (dashed) and after") -> str:
        """The SVG plot (only when the self-check passed)."""
        if self.before is None or self.after is None:
            raise ValueError("no plot: the self-check refused the recording")
        return svg(self.recording, self.before, self.after, title)


def preview(
    candidate: RuleSet,
    traffic: Path | Recording,
    baseline: RuleSet,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    max_arrivals: int = MAX_ARRIVALS,
) -> Preview:
    """Replay ``traffic`` (a recording's path, with its rotated files, or a
    :class:`Recording`) against ``baseline`` then ``candidate``.

    Raises :class:`~ratemw.replay.reader.RecordingError` when it cannot be read.
    """
    with paused_gc():
        return _preview(candidate, traffic, baseline, tolerance, max_arrivals)


def _preview(
    candidate: RuleSet,
    traffic: Path | Recording,
    baseline: RuleSet,
    tolerance: float,
    max_arrivals: int,
) -> Preview:
    recording = (
        traffic
        if isinstance(traffic, Recording)
        else read_recording(files_of(traffic), max_arrivals)
    )
    check = precheck(recording, baseline, tolerance)
    if not check.ok:
        return Preview(build_report(recording, check, None, None), recording, None, None)
    infos = stand_ins(recording)
    before = replay(recording, baseline, infos)
    check = self_check(recording, baseline, before, check, candidate)
    if not check.ok:
        return Preview(build_report(recording, check, before, None), recording, before, None)
    after = replay(recording, candidate, infos)
    return Preview(build_report(recording, check, before, after), recording, before, after)
