"""Operations: top offenders (with "Ban"), the penalty box, brownout, spike alerts.

Each change is the REST API's action (:class:`~ratemw.control.ops_api.OpsActions`):
authorized and audited there, read by the limiters from their Redis within an
operations interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ratemw.control.errors import OpsFailed, OpsUnavailable
from ratemw.control.ui.pages_overview import read_fleet
from ratemw.control.ui.web import Console, Ctx, Form, Page, Redirect

__all__ = ["add_ban", "clear_brownout", "ops_page", "remove_ban", "set_brownout"]

T = TypeVar("T")
TOP_MINUTES = 15
_SPLIT_CHARS = ", \n\t"


def _try(read: Callable[[], T]) -> tuple[T | None, str]:
    try:
        return read(), ""
    except (OpsUnavailable, OpsFailed) as exc:
        return None, str(exc)


def ban_identity(shown: str) -> str:
    """What ``add_ban`` takes for an identity as top offenders show it: the digest form
    as is, an address as ``ip:``."""
    return shown if shown.startswith("h:") else f"ip:{shown}"


def ops_page(console: Console, ctx: Ctx) -> Page:
    svc = console.service
    now = time.time()
    brownout, error = _try(svc.brownout)
    bans, _ = _try(svc.bans) if not error else (None, error)
    top, _ = _try(lambda: svc.top(minutes=TOP_MINUTES, n=20)) if not error else (None, error)
    window, _ = read_fleet(console) if not error else (None, error)
    spikes: list[dict[str, Any]] = []
    if window is not None:
        for rule, fields in sorted(window.series.items()):
            minutes = [(window.first_minute + i, n) for i, n in enumerate(fields.get("spikes", ()))
                       if n]  # fmt: skip
            if minutes:
                spikes.append({"rule": rule, "alerts": sum(n for _, n in minutes),
                               "last": minutes[-1][0] * 60.0})  # fmt: skip
    _, checked = console.rulesets.enforced()
    rules = [r.name for r in checked.ruleset.rules] if checked and checked.ruleset else []
    return Page("ops.html", {
        "title": "Operations", "nav": "ops", "error": error, "now": now,
        "brownout": brownout, "brownout_left": (brownout.until - now) if brownout else 0,
        "bans": [{"ban": b, "left": b.until - now} for b in bans or []],
        "top": {rule: [{"identity": who, "rejections": n, "ban": ban_identity(who)}
                       for who, n in rows] for rule, rows in (top or {}).items()},
        "top_minutes": TOP_MINUTES, "spikes": spikes, "rules": rules,
    })  # fmt: skip


def _number(text: str) -> object:
    """A form's number as the action takes it; the text itself when it is not one (the
    action refuses it with the reason)."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def _names(text: str) -> tuple[str, ...]:
    for sep in _SPLIT_CHARS[1:]:
        text = text.replace(sep, ",")
    return tuple(n for n in (part.strip() for part in text.split(",")) if n)


def set_brownout(console: Console, ctx: Ctx, form: Form) -> Redirect:
    console.service.set_brownout(
        ctx.principal, _number(form.text("factor", max_chars=30)),
        _number(form.text("seconds", max_chars=30)), _names(form.text("tiers")),
        _names(form.text("rules")), form.text("reason", max_chars=500),
    )  # fmt: skip
    return Redirect("/ui/ops#brownout", "brownout-set")


def clear_brownout(console: Console, ctx: Ctx, form: Form) -> Redirect:
    cleared = console.service.clear_brownout(ctx.principal)
    return Redirect("/ui/ops#brownout", "brownout-cleared" if cleared else "brownout-none")


def add_ban(console: Console, ctx: Ctx, form: Form) -> Redirect:
    console.service.add_ban(
        ctx.principal, form.text("rule", max_chars=256), form.text("identity", max_chars=600),
        _number(form.text("seconds", max_chars=30)), form.text("reason", "manual", 500),
    )  # fmt: skip
    return Redirect("/ui/ops#bans", "banned")


def remove_ban(console: Console, ctx: Ctx, form: Form) -> Redirect:
    console.service.remove_ban(
        ctx.principal, form.text("rule", max_chars=256), form.text("digest", max_chars=64)
    )
    return Redirect("/ui/ops#bans", "unbanned")
