"""What-if previews (docs/replay.md): read a recording made with
``Limiter(..., record=...)``, replay it through a real limiter on a manual clock,
check that the rules live when it was made reproduce its verdicts, and report what a
candidate rule set would change."""

from __future__ import annotations

from ratemw.replay.preview import Preview, preview

__all__ = ["Preview", "preview"]
