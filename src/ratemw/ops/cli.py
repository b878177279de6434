"""``ratemw top``, ``ratemw ban list|add|remove`` and ``ratemw brownout set|clear|show``.

Registered by ``ratemw.cli``. Each talks to the Redis the limiters share; identities
are given as ``ip:ADDRESS``, ``user:ID``, ``tenant:ID``, ``api_key:KEY`` (hashed here,
never sent) or the ``h:DIGEST`` form that ``top`` and ``ban list`` show.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any, TextIO

from ratemw.errors import ConfigError, StoreError
from ratemw.identity.resolver import IdentityResolver
from ratemw.ops.measures import Ban, Brownout, ip_ban
from ratemw.ops.shared import Layout
from ratemw.redact import redact, scrub
from ratemw.rules.model import IdentityConfig
from ratemw.rules.notation import parse_duration
from ratemw.store._keys import _hash_key, identity_digest

__all__ = ["add_commands", "parse_ban", "parse_identity"]


def add_commands(sub: Any) -> None:
    """Add ``top``, ``ban`` and ``brownout`` to the ``ratemw`` command's subparsers."""
    top = sub.add_parser("top", help="the fleet's top rejected identities per rule")
    _common(top, json=True)
    top.add_argument("--rule", help="only this rule")
    top.add_argument("--minutes", type=int, default=5, help="look back this far (default 5)")
    top.add_argument("-n", type=int, default=20, help="identities per rule (default 20)")
    top.set_defaults(run=_reaching_redis(_top))

    ban = sub.add_parser("ban", help="list, add or lift temporary bans (the penalty box)")
    bans = ban.add_subparsers(dest="ban_command", required=True)
    listing = bans.add_parser("list", help="running bans, soonest end first")
    _common(listing, json=True)
    listing.set_defaults(run=_reaching_redis(_ban_list))
    add = bans.add_parser("add", help="ban an identity from a rule for a while")
    _common(add)
    add.add_argument("--rule", required=True)
    add.add_argument("identity", help="ip:ADDR, user:ID, tenant:ID, api_key:KEY or h:DIGEST")
    add.add_argument("--for", dest="duration", default="15m", help="e.g. 15m (default)")
    add.add_argument("--reason", default="manual")
    add.set_defaults(run=_reaching_redis(_ban_add))
    remove = bans.add_parser("remove", help="lift a ban now")
    _common(remove)
    remove.add_argument("--rule", required=True)
    remove.add_argument("identity")
    remove.set_defaults(run=_reaching_redis(_ban_remove))

    brown = sub.add_parser("brownout", help="scale limits down everywhere for a while")
    browns = brown.add_subparsers(dest="brownout_command", required=True)
    bset = browns.add_parser("set", help="start (or replace) the brownout")
    _common(bset)
    bset.add_argument("--factor", type=float, required=True, help="0 < factor <= 1")
    bset.add_argument("--tiers", default="", help="comma-separated (default: all)")
    bset.add_argument("--rules", default="", help="comma-separated (default: all)")
    bset.add_argument("--for", dest="duration", required=True, help="e.g. 15m")
    bset.add_argument("--reason", default="")
    bset.set_defaults(run=_reaching_redis(_brownout_set))
    bclear = browns.add_parser("clear", help="end the brownout now")
    _common(bclear)
    bclear.set_defaults(run=_reaching_redis(_brownout_clear))
    bshow = browns.add_parser("show", help="the brownout in force, if any")
    _common(bshow, json=True)
    bshow.set_defaults(run=_reaching_redis(_brownout_show))


def _common(parser: argparse.ArgumentParser, json: bool = False) -> None:
    parser.add_argument("--redis", required=True, metavar="URL", help="the limiters' Redis")
    parser.add_argument("--app", default="default", help="key namespace (default: default)")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON")


def parse_identity(text: str, hash_key: bytes | str | None = None) -> tuple[str, str]:
    """(digest, shown form) of an identity given on the command line (see
    :func:`parse_ban`, which also gives the address of an ``ip:`` identity)."""
    digest, shown, _ = parse_ban(text, hash_key)
    return digest, shown


def parse_ban(text: str, hash_key: bytes | str | None = None) -> tuple[str, str, str]:
    """(digest, shown form, address) of an identity to ban or lift.

    ``address`` is the canonical address or network of an ``ip:`` identity (an
    IPv4-mapped IPv6 address is its IPv4 address), else ``""``; limiters map it to
    their own identity key, so the writer need not know their ``ipv6_prefix``. Raises
    ``ValueError`` for an unknown form or an ``ip:`` value that cannot name clients
    (unspecified, multicast, host bits set, ``/0``). The digest matches the one
    limiters compute (same ``RATEMW_HASH_KEY``); an API key is hashed as the resolver
    does.
    """
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise ValueError("identity: expected KIND:VALUE, e.g. ip:203.0.113.7 or h:<digest>")
    key = _hash_key(hash_key)
    if kind == "h":
        if len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
            raise ValueError("h: takes the 32-character digest that top and ban list show")
        return value, f"h:{value}", ""
    if kind == "ip":
        try:
            digest, shown = ip_ban(value, key)
        except ValueError as exc:
            # The reason never quotes unparsable text: it may be an API key typed as ip:.
            raise ValueError(f"identity ip:...: {exc}") from None
        return digest, shown, shown
    if kind in ("user", "tenant"):
        digest = identity_digest(value, key)
        return digest, f"h:{digest}", ""
    if kind == "api_key":
        resolver = IdentityResolver(IdentityConfig(), hash_key=hash_key)
        digest = identity_digest(resolver.digest(value), key)
        return digest, f"h:{digest}", ""
    raise ValueError("identity kind: must be ip, user, tenant, api_key or h")


def _client(args: argparse.Namespace) -> Any:
    from ratemw.store.redis import RedisStore

    return RedisStore(args.redis, socket_timeout=2.0, socket_connect_timeout=2.0).redis()


def _reaching_redis(run: Callable[[argparse.Namespace, TextIO], int]) -> Any:
    """An unreachable Redis is one line and exit status 1 (a runtime error; 2 is a
    usage error), not a traceback."""

    def guarded(args: argparse.Namespace, out: TextIO) -> int:
        from redis.exceptions import RedisError

        try:
            return run(args, out)
        except (RedisError, StoreError, OSError) as exc:
            reason = scrub(str(exc), [args.redis])  # redis-py may echo the URL
            out.write(f"error: Redis at {redact(args.redis)}: {type(exc).__name__}: {reason}\n")
            return 1

    return guarded


def _top(args: argparse.Namespace, out: TextIO) -> int:
    top = Layout(args.app).top(
        _client(args), time.time(), rule=args.rule, minutes=args.minutes, n=args.n
    )
    if args.json:
        data = {r: [{"identity": i, "rejections": n} for i, n in rows] for r, rows in top.items()}
        out.write(json.dumps(data, indent=2) + "\n")
        return 0
    if not top:
        out.write("no rejections recorded\n")
    for rule, rows in top.items():
        out.write(f"{rule}\n")
        for identity, count in rows:
            out.write(f"  {count:>10}  {identity}\n")
    return 0


def _ban_list(args: argparse.Namespace, out: TextIO) -> int:
    now = time.time()
    bans = Layout(args.app).list_bans(_client(args), now)
    if args.json:
        rows = [
            {"rule": b.rule, "identity": b.identity, "digest": b.digest,
             "until": b.until, "reason": b.reason} for b in bans
        ]  # fmt: skip
        out.write(json.dumps(rows, indent=2) + "\n")
        return 0
    if not bans:
        out.write("no bans\n")
    for b in bans:
        out.write(f"{b.rule:<20} {b.identity:<40} {b.until - now:>7.0f}s  {b.reason}\n")
    return 0


def _ban_add(args: argparse.Namespace, out: TextIO) -> int:
    try:
        digest, shown, address = parse_ban(args.identity)
        seconds = parse_duration(args.duration)
    except (ValueError, ConfigError) as exc:
        out.write(f"error: {exc}\n")
        return 2
    ban = Ban(args.rule, digest, shown, time.time() + seconds, args.reason, address)
    Layout(args.app).add_ban(_client(args), ban)
    out.write(f"banned {shown} from {args.rule} for {seconds:.0f}s\n")
    return 0


def _ban_remove(args: argparse.Namespace, out: TextIO) -> int:
    try:
        digest, shown = parse_identity(args.identity)
    except ValueError as exc:
        out.write(f"error: {exc}\n")
        return 2
    removed = Layout(args.app).remove_ban(_client(args), args.rule, digest)
    out.write(f"lifted the ban of {shown} from {args.rule}\n" if removed else "no such ban\n")
    return 0 if removed else 1


def _split(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _brownout_set(args: argparse.Namespace, out: TextIO) -> int:
    now = time.time()
    try:
        seconds = parse_duration(args.duration)
        b = Brownout(args.factor, now + seconds, _split(args.tiers), _split(args.rules),
                     args.reason)  # fmt: skip
    except (ValueError, ConfigError) as exc:
        out.write(f"error: {exc}\n")
        return 2
    Layout(args.app).set_brownout(_client(args), b, now)
    out.write(f"brownout x{b.factor:g} for {seconds:.0f}s on {_scope(b)}\n")
    return 0


def _scope(b: Brownout) -> str:
    rules = ",".join(b.rules) or "all rules"
    tiers = ",".join(b.tiers) or "all tiers"
    return f"{rules} ({tiers})"


def _brownout_clear(args: argparse.Namespace, out: TextIO) -> int:
    cleared = Layout(args.app).clear_brownout(_client(args))
    out.write("brownout cleared\n" if cleared else "no brownout\n")
    return 0


def _brownout_show(args: argparse.Namespace, out: TextIO) -> int:
    b = Layout(args.app).brownout(_client(args))
    if args.json:
        out.write((b.to_json() if b else "null") + "\n")
        return 0
    if b is None:
        out.write("no brownout\n")
    else:
        left = b.until - time.time()
        out.write(f"brownout x{b.factor:g} on {_scope(b)}, {left:.0f}s left {b.reason}\n")
    return 0
