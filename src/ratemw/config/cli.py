"""``ratemw diff A B`` and ``ratemw publish FILE --to TARGET``, registered by ``ratemw.cli``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from ratemw.config.diff import diff_rulesets, format_diff
from ratemw.config.loader import load
from ratemw.config.publish import publish
from ratemw.config.sources import SourceUnavailable
from ratemw.config.spec import read_rules, source_for
from ratemw.errors import ConfigError, MissingDependency
from ratemw.redact import redact, scrub
from ratemw.rules.model import RuleSet

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Add ``diff`` and ``publish`` to the ``ratemw`` command's subparsers."""
    diff = sub.add_parser(
        "diff",
        help="show rules added, removed, and limits raised or lowered from A to B",
        description="A and B are rules files, consul://, etcd:// or redis://...?key= URLs.",
    )
    diff.add_argument("old", metavar="A")
    diff.add_argument("new", metavar="B")
    diff.add_argument("--exit-code", action="store_true", help="exit 1 when there are differences")
    diff.set_defaults(run=_diff)

    pub = sub.add_parser(
        "publish",
        help="validate a rules file, then publish it where live limiters watch",
        description="Nothing is published when the file has any error.",
    )
    pub.add_argument("file", metavar="FILE")
    pub.add_argument(
        "--to",
        action="append",
        required=True,
        metavar="TARGET",
        help=(
            "file:///dir, consul://host:8500/key, etcd://host:2379/key or "
            "redis://host:6379/0?key=... (repeatable)"
        ),
    )
    pub.set_defaults(run=_publish)


def _read(spec: str) -> RuleSet:
    if "://" not in spec:
        path = Path(spec)
        loaded = load(path.read_bytes(), str(path), quiet=True)
        return loaded.raise_for_errors()
    source = source_for(spec)
    try:
        return read_rules(source)
    finally:
        source.close()


def _diff(args: argparse.Namespace, out: TextIO) -> int:
    # A runtime error exits 1, but with --exit-code 1 says "they differ": trouble is 2
    # then, as for diff(1).
    trouble = 2 if args.exit_code else 1
    try:
        old, new = _read(args.old), _read(args.new)
    except ConfigError as exc:
        print(scrub(str(exc), [args.old, args.new]), file=out)
        return trouble
    except (OSError, ValueError, MissingDependency) as exc:
        print(f"error: {scrub(str(exc), [args.old, args.new])}", file=out)
        return trouble
    diff = diff_rulesets(old, new)
    lines = format_diff(diff)
    for line in lines:
        print(line, file=out)
    if not diff:
        print("no differences", file=out)
        return 0
    lowered, raised = len(diff.lowered), len(diff.raised)
    print(
        f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed "
        f"({lowered} limit(s) lowered, {raised} raised)",
        file=out,
    )
    return 1 if args.exit_code else 0


def _publish(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    try:
        document = path.read_bytes()
    except OSError as exc:
        print(f"{path}:0:0: error: cannot read file: {exc.strerror}", file=out)
        return 1
    loaded = load(document, str(path), quiet=True)
    for problem in loaded.problems:
        print(problem, file=out)
    if not loaded.ok:
        print(f"refused: {path} has {len(loaded.errors)} error(s); nothing published", file=out)
        return 1
    status = 0
    for target in args.to:
        try:
            version = publish(document, str(path), target)
        except (ConfigError, SourceUnavailable, ValueError, MissingDependency, OSError) as exc:
            print(f"failed: {redact(target)}: {scrub(str(exc), [target])}", file=out)
            status = 1
            continue
        print(f"published {version[:12]} to {redact(target)}", file=out)
    return status
