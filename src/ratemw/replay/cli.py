"""``ratemw replay``: exit 0 with the report, 1 when the self-check refuses or the
inputs cannot be used, 2 on a usage error (argparse)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, TextIO

from ratemw.errors import ConfigError
from ratemw.replay.check import DEFAULT_TOLERANCE
from ratemw.replay.preview import preview
from ratemw.replay.reader import MAX_ARRIVALS, RecordingError
from ratemw.replay.report import render_text
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset

__all__ = ["add_commands"]


def _share(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text[:40]!r}") from None
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError("a share from 0 to below 1, e.g. 0.01")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_ARRIVALS:
        raise argparse.ArgumentTypeError(f"a whole number from 1 to {MAX_ARRIVALS}")
    return int(text)


def add_commands(sub: Any) -> None:
    """Add ``replay`` to the ``ratemw`` command's subparsers."""
    p = sub.add_parser(
        "replay",
        help="what-if: replay recorded traffic against candidate rules",
        description="Replay a recording (Limiter(..., record=...)) against the rules live "
        "when it was made (the self-check), then against the candidate, and report every "
        "decision that would change. Exit 1 when the self-check refuses.",
    )
    p.add_argument("--rules", required=True, metavar="CANDIDATE", help="the proposed rules")
    p.add_argument(
        "--traffic",
        required=True,
        metavar="RECORDING",
        help="the recording file ({pid} in its name: every process's files, merged)",
    )
    p.add_argument(
        "--baseline", metavar="CURRENT", help="the rules live when recorded (required to report)"
    )
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.add_argument("--plot", metavar="OUT.svg", help="write the before/after plot here")
    p.add_argument(
        "--tolerance",
        type=_share,
        default=DEFAULT_TOLERANCE,
        help=f"largest share of recorded verdicts the self-check may miss ({DEFAULT_TOLERANCE})",
    )
    p.add_argument("--max-arrivals", type=_count, default=MAX_ARRIVALS)
    p.set_defaults(run=_run)


def _rules(path: str, what: str, out: TextIO) -> RuleSet | None:
    try:
        return load_ruleset(Path(path))
    except ConfigError as exc:
        print(f"error: {what} rules {path}: invalid:\n{exc}", file=out)
    except OSError as exc:
        print(f"error: {what} rules {path}: cannot read: {exc.strerror or exc}", file=out)
    return None


def _run(args: argparse.Namespace, out: TextIO) -> int:
    if args.baseline is None:
        print(
            "refused: no --baseline: the self-check needs the rules that were live when the "
            "recording was made",
            file=out,
        )
        return 1
    candidate = _rules(args.rules, "candidate", out)
    baseline = _rules(args.baseline, "baseline", out)
    if candidate is None or baseline is None:
        return 1
    try:
        result = preview(
            candidate,
            Path(args.traffic),
            baseline,
            tolerance=args.tolerance,
            max_arrivals=args.max_arrivals,
        )
    except RecordingError as exc:
        print(f"error: {args.traffic}: {exc}", file=out)
        return 1
    if args.plot and result.ok:
        try:
            Path(args.plot).write_text(result.plot(), encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write the plot {args.plot}: {exc.strerror or exc}", file=out)
            return 1
    if args.json:
        out.write(json.dumps(result.report, indent=2, sort_keys=True) + "\n")
    else:
        out.write(render_text(result.report))
    return 0 if result.ok else 1
