"""The operations endpoints: brownout, bans and top offenders in the limiters' Redis.

This is the state that ``ratemw brownout|ban|top`` drive (:mod:`ratemw.ops.shared`),
and limiters read it every operations interval. The actions are functions of a
:class:`~ratemw.control.service.ControlService`. Each change goes through
:meth:`~ratemw.control.service.ControlService.act`, so it is audited like a rollout,
and refusals and Redis failures are audited as well. The handlers (``get_brownout``
...) are routed by :data:`ratemw.control.app.ENDPOINTS`, which also holds their OpenAPI
entries.

Identities are written as :func:`ratemw.ops.cli.parse_identity` reads them
(``ip:ADDRESS``, ``user:ID``, ``tenant:ID``, ``api_key:KEY``, ``h:DIGEST``). An API key
is hashed at once, so responses and the audit log hold only the shown form and the
digest. The digest is keyed with ``RATEMW_HASH_KEY``, which must be the limiters' key.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ratemw.control.auth import Principal
from ratemw.control.service import ControlService, InvalidRequest, NotFound
from ratemw.ops.cli import parse_identity
from ratemw.ops.shared import TOP_TTL_SECONDS, Ban, Brownout

if TYPE_CHECKING:
    from ratemw.control.app import Call

__all__ = [
    "add_ban",
    "ban_json",
    "bans",
    "brownout",
    "brownout_json",
    "clear_brownout",
    "delete_ban",
    "delete_brownout",
    "get_bans",
    "get_brownout",
    "get_top",
    "post_ban",
    "put_brownout",
    "remove_ban",
    "set_brownout",
    "top",
]

MAX_TOP_MINUTES = TOP_TTL_SECONDS // 60  # older minutes have expired in Redis
MAX_TOP_N = 1000
_KINDS = "ip:ADDRESS, user:ID, tenant:ID, api_key:KEY or h:<32-hex digest>"


# -- actions ----------------------------------------------------------------------------


def brownout(svc: ControlService) -> Brownout | None:
    """The brownout in force, or None."""
    return svc.ops("read the brownout", lambda layout, client: layout.brownout(client))


def set_brownout(
    svc: ControlService,
    actor: Principal,
    factor: object,
    seconds: object,
    tiers: tuple[str, ...] = (),
    rules: tuple[str, ...] = (),
    reason: str = "",
) -> Brownout:
    """Scale the limits of ``rules`` for ``tiers`` (empty: all) by ``factor`` for
    ``seconds``, replacing any brownout in force.

    Raises :class:`InvalidRequest` unless ``0 < factor <= 1`` and ``seconds > 0``.
    """

    def body() -> tuple[Brownout, Any]:
        scale = _number(factor)
        if scale is None or not 0 < scale <= 1:
            raise InvalidRequest(
                f"'factor' must be a number above 0 and at most 1 (0.5 halves the limits), "
                f"not {factor!r}"
            )
        duration = _seconds(seconds)
        now = time.time()
        b = Brownout(scale, now + duration, tiers, rules, reason)
        svc.ops("set the brownout", lambda layout, client: layout.set_brownout(client, b, now))
        return b, {**brownout_json(b), "seconds": duration}

    return svc.act(actor, "brownout.set", "brownout", body)


def clear_brownout(svc: ControlService, actor: Principal) -> bool:
    """End the brownout now; False when none was in force."""

    def body() -> tuple[bool, Any]:
        cleared = svc.ops("clear the brownout", lambda layout, c: layout.clear_brownout(c))
        return cleared, {"cleared": cleared}

    return svc.act(actor, "brownout.clear", "brownout", body)


def bans(svc: ControlService) -> list[Ban]:
    """Running bans, soonest end first (ended ones are dropped from Redis)."""
    now = time.time()
    return svc.ops("list the bans", lambda layout, client: layout.list_bans(client, now))


def add_ban(
    svc: ControlService,
    actor: Principal,
    rule: str,
    identity: str,
    seconds: object,
    reason: str = "manual",
) -> Ban:
    """Ban ``identity`` (``ip:ADDRESS``, ``api_key:KEY`` ...) from ``rule`` for ``seconds``.

    Replaces a running ban of the same identity. Raises :class:`InvalidRequest` for a
    missing rule, an identity that does not parse, or ``seconds <= 0``.
    """

    def body() -> tuple[Ban, Any]:
        if not rule:
            raise InvalidRequest("'rule' (the name of a rule) is required")
        digest, shown = _identity(identity)
        duration = _seconds(seconds)
        ban = Ban(rule, digest, shown, time.time() + duration, reason)
        svc.ops("add the ban", lambda layout, client: layout.add_ban(client, ban))
        return ban, {**ban_json(ban), "seconds": duration}

    return svc.act(actor, "ban.add", f"ban:{rule}", body)


def remove_ban(svc: ControlService, actor: Principal, rule: str, digest: str) -> None:
    """Lift the ban of ``digest`` from ``rule`` now; raises :class:`NotFound` if none."""

    def lift(layout: Any, client: Any) -> tuple[bool, str]:
        # What the ban showed, for the audit entry: the digest alone says little.
        info = client.hget(layout.bans_i, Ban(rule, digest, "", 0.0).member)
        shown = json.loads(info).get("identity") if info else None
        return layout.remove_ban(client, rule, digest), str(shown or f"h:{digest}")

    def body() -> tuple[None, Any]:
        removed, shown = svc.ops("lift the ban", lift)
        if not removed:
            raise NotFound(f"no running ban of {digest} from rule {rule!r}")
        return None, {"digest": digest, "identity": shown}

    svc.act(actor, "ban.remove", f"ban:{rule}", body)


def top(
    svc: ControlService, *, rule: str | None = None, minutes: int = 5, n: int = 20
) -> dict[str, list[tuple[str, int]]]:
    """rule -> [(identity, rejections)] across the fleet over the last ``minutes``."""
    now = time.time()
    return svc.ops(
        "read the top offenders",
        lambda layout, client: layout.top(client, now, rule=rule, minutes=minutes, n=n),
    )


def brownout_json(b: Brownout) -> dict[str, Any]:
    return {"factor": b.factor, "until": b.until, "tiers": list(b.tiers),
            "rules": list(b.rules), "reason": b.reason}  # fmt: skip


def ban_json(b: Ban) -> dict[str, Any]:
    return {"rule": b.rule, "identity": b.identity, "digest": b.digest, "until": b.until,
            "reason": b.reason}  # fmt: skip


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None  # JSON allows Infinity and NaN


def _seconds(value: object) -> float:
    seconds = _number(value)
    if seconds is None or seconds <= 0:
        raise InvalidRequest(f"'seconds' must be a number above 0, not {value!r}")
    return seconds


def _identity(text: str) -> tuple[str, str]:
    # parse_identity's messages quote the text, which may be an API key: never echo it.
    kind = text.partition(":")[0]
    try:
        return parse_identity(text)
    except ValueError:
        if kind == "h":
            raise InvalidRequest("'identity': h: takes the 32-character hex digest") from None
        if kind == "ip":
            raise InvalidRequest("'identity': ip: takes an IPv4 or IPv6 address") from None
        raise InvalidRequest(f"'identity' must be {_KINDS}") from None


# -- handlers (routed by ratemw.control.app.ENDPOINTS) ---------------------------------


def get_brownout(svc: ControlService, call: Call) -> tuple[int, Any]:
    b = brownout(svc)
    return 200, {"brownout": brownout_json(b) if b is not None else None}


def put_brownout(svc: ControlService, call: Call) -> tuple[int, Any]:
    data = call.json()
    b = set_brownout(
        svc, call.principal, data.get("factor"), data.get("seconds"), _names(data, "tiers"),
        _names(data, "rules"), call.text(data, "reason"),
    )  # fmt: skip
    return 200, {"brownout": brownout_json(b)}


def delete_brownout(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, {"cleared": clear_brownout(svc, call.principal)}


def get_bans(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, {"bans": [ban_json(b) for b in bans(svc)]}


def post_ban(svc: ControlService, call: Call) -> tuple[int, Any]:
    data = call.json()
    ban = add_ban(
        svc, call.principal, call.text(data, "rule"), call.text(data, "identity"),
        data.get("seconds"), call.text(data, "reason", "manual"),
    )  # fmt: skip
    return 201, {"ban": ban_json(ban)}


def delete_ban(svc: ControlService, call: Call) -> tuple[int, Any]:
    remove_ban(svc, call.principal, call.params["rule"], call.params["digest"])
    return 204, None


def get_top(svc: ControlService, call: Call) -> tuple[int, Any]:
    minutes = max(1, min(call.int_query("minutes", 5) or 5, MAX_TOP_MINUTES))
    n = max(1, min(call.int_query("n", 20) or 20, MAX_TOP_N))
    found = top(svc, rule=call.query.get("rule") or None, minutes=minutes, n=n)
    rules = {
        rule: [{"identity": who, "rejections": count} for who, count in rows]
        for rule, rows in found.items()
    }
    return 200, {"rules": rules}


def _names(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(f"{key!r} must be a list of names (empty or left out: all)")
    return tuple(value)
