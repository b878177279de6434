"""``ratemw convert FILE``: a rules file from Flask-Limiter, slowapi or django-ratelimit
decorators (:mod:`ratemw.config.convert`), registered by ``ratemw.cli``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, TextIO

from ratemw.config.convert import MAX_SOURCE_BYTES, convert_source
from ratemw.rules.parse import parse_ruleset

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    """Add ``convert`` to the ``ratemw`` command's subparsers."""
    convert = sub.add_parser(
        "convert",
        help="write a rules file from Flask-Limiter, slowapi or django-ratelimit decorators",
        description=(
            "Reads FILE without running it. What cannot be translated is listed as comments "
            "at the top of the output, with its line; the exit status is 1 when any of it "
            "needs a decision (an error), 0 otherwise."
        ),
    )
    convert.add_argument("file", metavar="FILE", help="a Python module (views, app)")
    convert.add_argument(
        "--module",
        help="the module's dotted name, for django-ratelimit views (default: from FILE's path)",
    )
    convert.add_argument("-o", "--output", metavar="OUT", help="write here, not to stdout")
    convert.set_defaults(run=_convert)


def _module_name(path: Path) -> str:
    parts = list(path.with_suffix("").parts)
    return ".".join(p for p in parts if p not in ("", ".", "..", "/")) or "views"


def _convert(args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        print(f"{args.file}:0: error: cannot read file: {exc.strerror}", file=out)
        return 1
    if len(raw) > MAX_SOURCE_BYTES:
        print(f"{args.file}:0: error: larger than {MAX_SOURCE_BYTES} bytes", file=out)
        return 1
    try:
        conversion = convert_source(raw.decode("utf-8"), args.module or _module_name(path))
    except (UnicodeDecodeError, SyntaxError, ValueError) as exc:
        print(f"{args.file}:0: error: cannot parse: {type(exc).__name__}", file=out)
        return 1
    notes = [f"# {f.render(args.file)}" for f in conversion.findings]
    header = [f"# Converted by `ratemw convert {args.file}`: review before use."]
    text = "\n".join([*header, *notes, conversion.yaml()])
    _, problems = parse_ruleset(text, args.output or "<converted>")
    invalid = [p for p in problems if p.severity == "error"]
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        for line in notes:
            print(line[2:], file=out)
        print(f"wrote {len(conversion.rules)} rule(s) to {args.output}", file=out)
    else:
        print(text, end="", file=out)
    for problem in invalid:  # a bug of the converter: it must write valid rules
        print(f"error: the converted rules do not validate: {problem}", file=out)
    errors = any(f.severity == "error" for f in conversion.findings)
    return 1 if errors or invalid else 0
