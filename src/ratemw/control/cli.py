"""``ratemw control`` (serve the API), ``ratemw audit verify`` and ``ratemw control-token``.

Registered by :mod:`ratemw.cli` through :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import unquote, urlsplit

from ratemw._deps import require
from ratemw.control import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PROPOSAL_BYTES,
    DEFAULT_MAX_TRAFFIC_BYTES,
    ControlError,
)
from ratemw.control.audit import verify
from ratemw.control.auth import ROLES, load_tokens, new_token, token_digest
from ratemw.control.db import open_database, sqlite_path
from ratemw.errors import MissingDependency
from ratemw.redact import redact, scrub

__all__ = ["add_commands"]

DEFAULT_DB = "sqlite:///ratemw-control.db"
_TARGET_SCHEMES = ("file", "consul", "consuls", "etcd", "etcds", "redis", "rediss")
_OPS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _file_target_problem(target: str) -> str | None:
    """Make a ``file://`` target's directory if it is missing; what is wrong with it, if
    anything, so that a bad target stops the service before it serves, not at the first
    rollout."""
    parts = urlsplit(target)
    if parts.scheme != "file":
        return None
    path = Path(unquote(parts.path))
    folder = path.parent if path.suffix in (".yaml", ".yml", ".json", ".toml") else path
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        return f"cannot create {folder}: {exc.strerror or exc}"
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK):
        return f"{folder} is not writable by this user"
    return None


def _serve(args: argparse.Namespace, out: TextIO) -> int:
    urls = [*args.publish, args.db, *([args.ops_redis] if args.ops_redis else [])]
    for target in args.publish:
        if urlsplit(target).scheme not in _TARGET_SCHEMES:
            print(
                f"--publish {redact(target)!r}: want file:///dir, consul://..., etcd://... "
                "or redis://...",
                file=out,
            )
            return 2
    for target in args.publish:
        problem = _file_target_problem(target)
        if problem is not None:
            print(f"--publish {redact(target)!r}: {problem}", file=out)
            return 1
    if args.max_proposal_bytes < 1 or args.max_body_bytes < 1:
        print("--max-proposal-bytes and --max-body-bytes must be at least 1", file=out)
        return 2
    if args.traffic_max_bytes < 1:
        print("--traffic-max-bytes must be at least 1", file=out)
        return 2
    if args.ops_redis is not None and urlsplit(args.ops_redis).scheme not in _OPS_SCHEMES:
        print(f"--ops-redis: want one of {', '.join(s + '://' for s in _OPS_SCHEMES)}", file=out)
        return 2
    try:
        require("uvicorn", extra="control", purpose="ratemw control")
        import uvicorn

        from ratemw.control.app import create_app

        tokens = load_tokens(args.tokens, os.environ)
        console: Any = False
        if not args.no_console:
            from ratemw.control.ui import ConsoleConfig

            environ = dict(os.environ)
            if args.console_secure_cookie:
                environ["RATEMW_CONSOLE_SECURE_COOKIE"] = "1"
            console = ConsoleConfig.from_env(
                environ, max_body_bytes=args.max_body_bytes,
                max_proposal_bytes=args.max_proposal_bytes,
            )  # fmt: skip
        app = create_app(
            args.db, args.publish, tokens, required_approvals=args.approvals,
            ops_redis=args.ops_redis, ops_app=args.ops_app,
            max_proposal_bytes=args.max_proposal_bytes, max_body_bytes=args.max_body_bytes,
            console=console, traffic=args.traffic, max_traffic_bytes=args.traffic_max_bytes,
        )  # fmt: skip
    except (ControlError, MissingDependency) as exc:
        print(f"ratemw control: {scrub(str(exc), urls)}", file=out)
        return 1
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        print(f"ratemw control: cannot listen on {args.host}:{args.port}: {exc}", file=out)
        return 1
    port = sock.getsockname()[1]
    if not _is_loopback(args.host):
        print(
            f"warning: listening on {args.host}, not loopback: put TLS in front, "
            "bearer tokens travel in the clear",
            file=out,
        )
    if not len(tokens):
        print("warning: no tokens configured (--tokens or RATEMW_CONTROL_TOKENS)", file=out)
    host = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    targets = ", ".join(redact(t) for t in args.publish) or "none"
    ops = redact(args.ops_redis) if args.ops_redis else "off"
    print(
        f"ratemw control on http://{host}:{port} (db {redact(args.db)}; publishing to {targets}; "
        f"{len(tokens)} token(s); {args.approvals} approval(s) required; "
        f"operations {ops}; previews {'from ' + args.traffic if args.traffic else 'off'})",
        file=out,
        flush=True,
    )
    if not args.no_console:
        print(f"console: http://{host}:{port}/ui/ (sign in with a control token)", file=out)
    config = uvicorn.Config(app, log_level=args.log_level, lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the SIGINT it shut down on
        print("ratemw control: stopped", file=out, flush=True)
    finally:
        sock.close()
    return 0


def _verify(args: argparse.Namespace, out: TextIO) -> int:
    if args.db.startswith("sqlite:"):
        try:
            path = sqlite_path(args.db)
        except ControlError as exc:
            print(f"ratemw audit verify: {exc}", file=out)
            return 2
        if path != ":memory:" and not os.path.exists(path):
            print(f"ratemw audit verify: no database at {path}", file=out)
            return 1
    try:
        db = open_database(args.db)
    except ControlError as exc:
        print(f"ratemw audit verify: {scrub(str(exc), [args.db])}", file=out)
        return 1
    try:
        result = verify(db)
    finally:
        db.close()
    print(result, file=out)
    return 0 if result.ok else 1


def _token(args: argparse.Namespace, out: TextIO) -> int:
    token = new_token()
    print(f"token (give it to {args.principal}; it is not stored): {token}", file=out)
    print("tokens file entry:", file=out)
    entry = f"{{principal: {args.principal}, role: {args.role}}}"
    print(f'  "{token_digest(token)}": {entry}', file=out)
    return 0


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``control``, ``audit`` and ``control-token`` to the ``ratemw`` command."""
    control = sub.add_parser("control", help="run the control-plane API (Starlette on uvicorn)")
    control.add_argument(
        "--db", default=DEFAULT_DB, metavar="URL",
        help=f"sqlite:///path.db or postgresql://... (default {DEFAULT_DB})",
    )  # fmt: skip
    control.add_argument(
        "--publish", action="append", default=[], metavar="TARGET",
        help=(
            "file:///dir, consul://host:port/key, etcd://host:port/key or "
            "redis://host:port/db?key=...; repeatable"
        ),
    )  # fmt: skip
    control.add_argument(
        "--tokens", metavar="FILE",
        help="YAML/JSON file of token digests (also read: RATEMW_CONTROL_TOKENS)",
    )  # fmt: skip
    control.add_argument("--host", default="127.0.0.1")
    control.add_argument("--port", type=int, default=8088, help="0 picks a free port")
    control.add_argument(
        "--approvals", type=int, default=1, metavar="N",
        help="approvals by principals other than the author that a version needs",
    )  # fmt: skip
    control.add_argument(
        "--ops-redis", metavar="URL",
        help="the limiters' Redis, for /v1/brownout, /v1/bans and /v1/top (without it: 503)",
    )  # fmt: skip
    control.add_argument(
        "--ops-app", default="default", metavar="NAME",
        help="the limiters' operations namespace (OpsConfig app; default: default)",
    )  # fmt: skip
    control.add_argument(
        "--max-proposal-bytes", type=int, default=DEFAULT_MAX_PROPOSAL_BYTES, metavar="N",
        help=f"largest proposal body accepted, else 413 (default {DEFAULT_MAX_PROPOSAL_BYTES})",
    )  # fmt: skip
    control.add_argument(
        "--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES, metavar="N",
        help=f"largest other request body accepted, else 413 (default {DEFAULT_MAX_BODY_BYTES})",
    )  # fmt: skip
    control.add_argument(
        "--no-console", action="store_true", dest="no_console",
        help="do not serve the browser console at /ui/ (the REST API only)",
    )  # fmt: skip
    control.add_argument(
        "--console-secure-cookie", action="store_true", dest="console_secure_cookie",
        help="mark the console's session cookie Secure even when TLS ends before ratemw "
        "(a proxy in front); also RATEMW_CONSOLE_SECURE_COOKIE=1",
    )  # fmt: skip
    control.add_argument(
        "--traffic", metavar="PATH",
        help="the recording (Limiter(..., record=...)) that POST /v1/versions/{id}/preview "
        "replays; its rotated files are read too (docs/replay.md)",
    )  # fmt: skip
    control.add_argument(
        "--traffic-max-bytes", type=int, default=DEFAULT_MAX_TRAFFIC_BYTES, metavar="N",
        dest="traffic_max_bytes",
        help=f"largest recording a preview reads, its files together "
        f"(default {DEFAULT_MAX_TRAFFIC_BYTES})",
    )  # fmt: skip
    control.add_argument("--log-level", default="warning", dest="log_level")
    control.set_defaults(run=_serve)

    audit = sub.add_parser("audit", help="work with the control plane's audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    check = audit_sub.add_parser("verify", help="recompute the hash chain; exit 1 if broken")
    check.add_argument("--db", default=DEFAULT_DB, metavar="URL")
    check.set_defaults(run=_verify)

    token = sub.add_parser("control-token", help="make a control-plane token and its entry")
    token.add_argument("--principal", required=True)
    token.add_argument("--role", required=True, choices=ROLES)
    token.set_defaults(run=_token)
