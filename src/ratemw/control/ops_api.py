"""Operations: brownout, bans and top offenders in the limiters' Redis.

This is the state that ``ratemw brownout|ban|top`` drive (:mod:`ratemw.ops.shared`),
and limiters read it every operations interval. :class:`OpsActions` holds the
actions; each change goes through :meth:`~ratemw.control.core.ServiceCore.act`, so it
is authorized and audited like a rollout, and refusals and Redis failures are audited
as well. :data:`ENDPOINTS` routes them.

Identities are written as :func:`ratemw.ops.cli.parse_ban` reads them
(``ip:ADDRESS``, ``user:ID``, ``tenant:ID``, ``api_key:KEY``, ``h:DIGEST``). An API key
is hashed at once, so responses and the audit log hold only the shown form and the
digest. The digest is keyed with ``RATEMW_HASH_KEY``, which must be the limiters' key.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from typing import Any

from ratemw.control.auth import Principal
from ratemw.control.core import ServiceCore
from ratemw.control.errors import InvalidRequest, NotFound
from ratemw.control.http import Call, Endpoint
from ratemw.ops.cli import parse_ban
from ratemw.ops.measures import Ban, Brownout
from ratemw.ops.shared import TOP_TTL_SECONDS

__all__ = ["ENDPOINTS", "MAX_SECONDS", "MAX_TOP_MINUTES", "MAX_TOP_N", "OpsActions",
           "ban_json", "brownout_json"]  # fmt: skip

MAX_TOP_MINUTES = TOP_TTL_SECONDS // 60  # older minutes have expired in Redis
MAX_TOP_N = 1000
MAX_SECONDS = 366 * 24 * 3600  # a brownout or a ban lasts at most a year
_KINDS = "ip:ADDRESS, user:ID, tenant:ID, api_key:KEY or h:<32-hex digest>"


class OpsActions(ServiceCore):
    """Brownout, bans and top offenders; without ``ops_redis`` every one raises
    :class:`~ratemw.control.errors.OpsUnavailable`, and a Redis failure
    :class:`~ratemw.control.errors.OpsFailed`."""

    def brownout(self) -> Brownout | None:
        """The brownout in force, or None."""
        return self.ops("read the brownout", lambda layout, client: layout.brownout(client))

    def set_brownout(
        self,
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
                    f"'factor' must be a number above 0 and at most 1 (0.5 halves the "
                    f"limits), not {factor!r}"
                )
            duration = _seconds(seconds)
            now = time.time()
            b = Brownout(scale, now + duration, tiers, rules, reason)
            self.ops("set the brownout", lambda layout, client: layout.set_brownout(client, b, now))
            return b, {**brownout_json(b), "seconds": duration}

        return self.act(actor, "deploy", "brownout.set", "brownout", body)

    def clear_brownout(self, actor: Principal) -> bool:
        """End the brownout now; False when none was in force."""

        def body() -> tuple[bool, Any]:
            cleared = self.ops("clear the brownout", lambda layout, c: layout.clear_brownout(c))
            return cleared, {"cleared": cleared}

        return self.act(actor, "deploy", "brownout.clear", "brownout", body)

    def bans(self) -> list[Ban]:
        """Running bans, soonest end first (ended ones are dropped from Redis)."""
        now = time.time()
        return self.ops("list the bans", lambda layout, client: layout.list_bans(client, now))

    def add_ban(
        self, actor: Principal, rule: str, identity: str, seconds: object, reason: str = "manual"
    ) -> Ban:
        """Ban ``identity`` (``ip:ADDRESS``, ``api_key:KEY`` ...) from ``rule`` for
        ``seconds``.

        Replaces a running ban of the same identity. Raises :class:`InvalidRequest` for a
        missing rule, an identity that does not parse, or ``seconds <= 0``.
        """

        def body() -> tuple[Ban, Any]:
            if not rule:
                raise InvalidRequest("'rule' (the name of a rule) is required")
            digest, shown, address = _identity(identity)
            duration = _seconds(seconds)
            ban = Ban(rule, digest, shown, time.time() + duration, reason, address)
            self.ops("add the ban", lambda layout, client: layout.add_ban(client, ban))
            return ban, {**ban_json(ban), "seconds": duration}

        return self.act(actor, "deploy", "ban.add", f"ban:{rule}", body)

    def remove_ban(self, actor: Principal, rule: str, digest: str) -> None:
        """Lift the ban of ``digest`` from ``rule`` now; raises :class:`NotFound` if none."""

        def lift(layout: Any, client: Any) -> tuple[bool, str]:
            # What the ban showed, for the audit entry: the digest alone says little.
            info = client.hget(layout.bans_i, Ban(rule, digest, "", 0.0).member)
            shown = json.loads(info).get("identity") if info else None
            return layout.remove_ban(client, rule, digest), str(shown or f"h:{digest}")

        def body() -> tuple[None, Any]:
            removed, shown = self.ops("lift the ban", lift)
            if not removed:
                raise NotFound(f"no running ban of {digest} from rule {rule!r}")
            return None, {"digest": digest, "identity": shown}

        self.act(actor, "deploy", "ban.remove", f"ban:{rule}", body)

    def top(
        self, *, rule: str | None = None, minutes: int = 5, n: int = 20
    ) -> dict[str, list[tuple[str, int]]]:
        """rule -> [(identity, rejections)] across the fleet over the last ``minutes``."""
        now = time.time()
        return self.ops(
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
    if seconds > MAX_SECONDS:  # Redis refuses expiries past 2**63 ms: long before that
        raise InvalidRequest(f"'seconds' must be at most {MAX_SECONDS} (366 days), not {value!r}")
    return seconds


def _identity(text: str) -> tuple[str, str, str]:
    # Only parse_ban's ip: reasons are shown: they quote an address only once it parsed.
    kind = text.partition(":")[0]
    try:
        return parse_ban(text)
    except ValueError as exc:
        if kind == "h":
            raise InvalidRequest("'identity': h: takes the 32-character hex digest") from None
        if kind == "ip":
            reason = str(exc).removeprefix("identity ip:...: ")
            if reason.startswith("not an IPv4"):
                reason = "takes an IPv4 or IPv6 address or network"
            raise InvalidRequest(f"'identity': ip: {reason}") from None
        raise InvalidRequest(f"'identity' must be {_KINDS}") from None


# -- routes -----------------------------------------------------------------------------


def _get_brownout(svc: OpsActions, call: Call) -> tuple[int, Any]:
    b = svc.brownout()
    return 200, {"brownout": brownout_json(b) if b is not None else None}


def _put_brownout(svc: OpsActions, call: Call) -> tuple[int, Any]:
    data = call.json()
    b = svc.set_brownout(
        call.principal, data.get("factor"), data.get("seconds"), _names(data, "tiers"),
        _names(data, "rules"), call.text(data, "reason"),
    )  # fmt: skip
    return 200, {"brownout": brownout_json(b)}


def _delete_brownout(svc: OpsActions, call: Call) -> tuple[int, Any]:
    return 200, {"cleared": svc.clear_brownout(call.principal)}


def _get_bans(svc: OpsActions, call: Call) -> tuple[int, Any]:
    return 200, {"bans": [ban_json(b) for b in svc.bans()]}


def _post_ban(svc: OpsActions, call: Call) -> tuple[int, Any]:
    data = call.json()
    ban = svc.add_ban(
        call.principal, call.text(data, "rule"), call.text(data, "identity"),
        data.get("seconds"), call.text(data, "reason", "manual"),
    )  # fmt: skip
    return 201, {"ban": ban_json(ban)}


def _delete_ban(svc: OpsActions, call: Call) -> tuple[int, Any]:
    svc.remove_ban(call.principal, call.params["rule"], call.params["digest"])
    return 204, None


def _get_top(svc: OpsActions, call: Call) -> tuple[int, Any]:
    minutes = max(1, min(call.int_query("minutes", 5) or 5, MAX_TOP_MINUTES))
    n = max(1, min(call.int_query("n", 20) or 20, MAX_TOP_N))
    found = svc.top(rule=call.query.get("rule") or None, minutes=minutes, n=n)
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


# The limiters' Redis (--ops-redis): 503 without it, 502 when it fails.
ENDPOINTS: tuple[Endpoint[OpsActions], ...] = (
    Endpoint("GET", "/v1/brownout", "getBrownout", "read", "The brownout in force, or null",
             _get_brownout, (200, "BrownoutState"), errors=(502, 503)),
    Endpoint("PUT", "/v1/brownout", "setBrownout", "deploy",
             "Scale limits down for a while (replaces the brownout in force)",
             _put_brownout, (200, "BrownoutOnly"), body="BrownoutRequest",
             errors=(422, 502, 503), body_required=True),
    Endpoint("DELETE", "/v1/brownout", "clearBrownout", "deploy", "End the brownout now",
             _delete_brownout, (200, "Cleared"), errors=(502, 503)),
    Endpoint("GET", "/v1/bans", "listBans", "read", "Running bans, soonest end first",
             _get_bans, (200, "BanList"), errors=(502, 503)),
    Endpoint("POST", "/v1/bans", "addBan", "deploy",
             "Ban an identity from a rule for a while", _post_ban, (201, "BanOnly"),
             body="BanRequest", errors=(422, 502, 503), body_required=True),
    Endpoint("DELETE", "/v1/bans/{rule}/{digest}", "removeBan", "deploy",
             "Lift a ban now (the digest as GET /v1/bans shows it)", _delete_ban,
             (204, ""), errors=(404, 502, 503)),
    Endpoint("GET", "/v1/top", "topOffenders", "read",
             "The fleet's most rejected identities per rule", _get_top,
             (200, "TopOffenders"),
             query=(("rule", "string", "only this rule"),
                    ("minutes", "integer",
                     f"look back this far (1..{MAX_TOP_MINUTES}, default 5)"),
                    ("n", "integer", f"identities per rule (1..{MAX_TOP_N}, default 20)")),
             errors=(502, 503)),
)  # fmt: skip
