"""The ``ratemw`` command: ``check``, ``explain`` and ``demo`` here; ``diff`` and
``publish`` (live rules), ``control`` (the control plane), ``top``, ``ban`` and
``brownout`` (operations) from their packages."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from ratemw.errors import ConfigError
from ratemw.identity.resolver import IdentityResolver
from ratemw.request import RequestInfo
from ratemw.rules.compile import CompiledRule, compile_rules
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, parse_ruleset, read_rules

__all__ = ["explain_ruleset", "main"]

_COMMAND_MODULES = (
    "ratemw.config.cli",
    "ratemw.config.convert_cli",
    "ratemw.control.cli",
    "ratemw.ops.cli",
    "ratemw.replay.cli",
)


def _check(paths: Sequence[str], out: TextIO) -> int:
    errors = warnings = 0
    for name in paths:
        path = Path(name)
        try:
            text = read_rules(path)
        except OSError as exc:
            print(f"{name}:0:0: error: cannot read file: {exc.strerror}", file=out)
            errors += 1
            continue
        _, problems = parse_ruleset(text, str(path))
        for problem in problems:
            print(problem, file=out)
            if problem.severity == "error":
                errors += 1
            else:
                warnings += 1
    verdict = "invalid" if errors else "ok"
    print(f"{verdict}: {errors} error(s), {warnings} warning(s) in {len(paths)} file(s)", file=out)
    return 1 if errors else 0


def _describe_limit(cr: CompiledRule, tier: str | None) -> str:
    rule = cr.rule
    if rule.concurrency is not None:
        return f"concurrency {rule.concurrency}"
    rates = ", ".join(str(p.rate) for p in cr.policies_for(tier))
    burst = f" burst {rule.burst}" if rule.burst is not None else ""
    cost = f" cost {rule.cost}" if rule.cost != 1 else ""
    return f"{rates or '(no limit for this tier)'} {rule.algorithm}{burst}{cost}"


def _explain(args: argparse.Namespace, out: TextIO) -> int:
    try:
        ruleset = load_ruleset(Path(args.file))
    except ConfigError as exc:
        print(exc, file=out)
        return 1
    except OSError as exc:
        print(f"{args.file}:0:0: error: cannot read file: {exc.strerror}", file=out)
        return 1
    return _explain_rules(ruleset, args, out)


def explain_ruleset(
    ruleset: RuleSet,
    argv: Sequence[str],
    out: TextIO,
    route_of: Callable[[str, str], str | None] | None = None,
) -> int:
    """``ratemw explain`` for rules already loaded (an adapter's, decorator rules
    included): ``argv`` as after ``ratemw explain FILE``. ``route_of(method, path)``
    names the framework route of a request when ``--route`` is not given. Returns the
    exit status (2 for a usage error, as ``ratemw`` does)."""
    parser = _ReportingParser(prog="explain", add_help=False)
    _explain_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        print(f"error: {exc}", file=out)
        return 2
    if args.route is None and route_of is not None:
        args.route = route_of(args.method.upper(), args.path)
    return _explain_rules(ruleset, args, out)


def _explain_rules(ruleset: RuleSet, args: argparse.Namespace, out: TextIO) -> int:
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"--header wants NAME:VALUE, got {item!r}", file=out)
            return 2
        headers[name.strip().lower()] = value.strip()
    info = RequestInfo(
        method=args.method.upper(),
        path=args.path,
        host=args.host or "",
        peer=args.ip,
        headers=headers,
        user=args.user,
        tenant=args.tenant,
        tier=args.tier,
        api_key=args.api_key,
        route=args.route,
    )
    snapshot = compile_rules(ruleset)
    resolver = IdentityResolver(ruleset.identity)
    tier = info.tier if info.tier in snapshot.tiers else snapshot.default_tier
    print(
        f"{info.method} {info.path}  host={info.host or '-'}  "
        f"client={resolver.client_ip(info)}  tier={tier or '-'}",
        file=out,
    )
    explained = snapshot.explain(info)
    applying = [cr for cr, why in explained if why is None]
    print("applies, in order:" if applying else "no rule applies", file=out)
    for n, cr in enumerate(applying, 1):
        key = resolver.key(cr.identity, info)
        ident = "+".join(cr.identity)
        if key is None:
            key_text = (
                "skipped: no identity"
                if cr.skip_missing
                else (f"ip {resolver.client_ip(info)} (no {ident}, falls back to ip)")
            )
        else:
            key_text = f"{ident} {key!r}"
        mode = "enforce" if cr.enforce else "shadow"
        print(f"  {n}. {cr.name}: {_describe_limit(cr, tier)}; key {key_text}; {mode}", file=out)
    others = [(cr, why) for cr, why in explained if why is not None]
    if others:
        print("does not apply:", file=out)
        for cr, why in others:
            print(f"  - {cr.name}: {why}", file=out)
    return 0


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ratemw.demo import run_demo

    try:
        return run_demo(seconds=args.seconds, rules=args.rules, out=out)
    except ConfigError as exc:
        print(exc, file=out)
        return 1
    except OSError as exc:
        print(f"{args.rules}:0:0: error: cannot read file: {exc.strerror}", file=out)
        return 1


class _UsageError(Exception):
    pass


class _ReportingParser(argparse.ArgumentParser):
    """Raises on a usage error instead of exiting: the caller reports it."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _explain_arguments(explain: argparse.ArgumentParser) -> None:
    explain.add_argument("--method", default="GET")
    explain.add_argument("--path", required=True)
    explain.add_argument("--host")
    explain.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    explain.add_argument("--ip", default="127.0.0.1", help="the TCP peer address")
    explain.add_argument("--user")
    explain.add_argument("--tenant")
    explain.add_argument("--tier")
    explain.add_argument("--api-key", dest="api_key")
    explain.add_argument("--route")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ratemw", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    check = sub.add_parser("check", help="validate rules files; exit 1 on any error")
    check.add_argument("files", nargs="+", metavar="FILE")

    explain = sub.add_parser("explain", help="show which rules apply to a request, and why")
    explain.add_argument("file", metavar="FILE")
    _explain_arguments(explain)

    demo = sub.add_parser("demo", help="drive synthetic traffic through the engine")
    demo.add_argument("--seconds", type=float, default=3.0)
    demo.add_argument("--rules", help="rules file (default: the bundled demo rules)")
    # Commands of the live-rules and control-plane packages register themselves: each
    # module's add_commands(sub) adds parsers with set_defaults(run=callable(args, out)).
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if not exc.name or not name.startswith(exc.name):
                raise  # a missing dependency of the module, not the module itself
            continue
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Entry point of the ``ratemw`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    if args.command == "check":
        return _check(args.files, stream)
    if args.command == "explain":
        return _explain(args, stream)
    if args.command == "demo":
        return _demo(args, stream)
    result: int = args.run(args, stream)
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
