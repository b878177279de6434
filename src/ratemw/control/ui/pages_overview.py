"""The overview: what is enforced, any rollout in progress, and each rule with the
fleet's decisions of the last hour (:mod:`ratemw.ops.fleet_counts`)."""

from __future__ import annotations

import time
from typing import Any

from ratemw.control.errors import OpsFailed, OpsUnavailable
from ratemw.control.ui import charts
from ratemw.control.ui.web import Console, Ctx, Page
from ratemw.ops.fleet_counts import FleetWindow, counts_key, read_counts
from ratemw.ops.stats import VERDICTS
from ratemw.rules.model import Rule, RuleSet

__all__ = ["VERDICT_LABELS", "describe", "overview_page", "read_fleet"]

MINUTES = 60
#: ``verdict|mode`` -> what the chart calls it
VERDICT_LABELS = {f"{v}|{m}": v if m == "enforce" else f"{v} (shadow)" for v, m, _ in VERDICTS}


def read_fleet(console: Console) -> tuple[FleetWindow | None, str]:
    """The last hour of the fleet's counts, or None and why not."""
    svc = console.service
    try:
        return svc.ops(
            "read the fleet's counts",
            lambda layout, client: read_counts(client, layout.prefix, time.time(), MINUTES),
        ), ""
    except OpsUnavailable:
        key = counts_key(svc.ops_layout.prefix, 0).removesuffix("0") + "<minute>"
        return None, (
            "The charts show what every limiter adds, once per operations pass, to its "
            f"Redis under {key}. Start ratemw control with --ops-redis (the limiters' "
            "Redis URL) and --ops-app (their operations app) to see them."
        )
    except OpsFailed as exc:
        return None, str(exc)


def describe(rule: Rule) -> dict[str, Any]:
    """A rule as the overview shows it: match, identity, limits per tier, mode."""
    m = rule.match
    where = " ".join(filter(None, [
        ",".join(sorted(m.methods)) if m.methods else "any method",
        f"route {m.route}" if m.route else (m.path or "any path"),
        f"host {m.host}" if m.host else "",
        " ".join(f"{k}: {v}" for k, v in m.headers),
    ]))  # fmt: skip
    if rule.concurrency is not None:
        limits = [("all", f"{rule.concurrency} in flight")]
    elif isinstance(rule.limit, dict):
        limits = [(tier, ", ".join(str(r) for r in rates)) for tier, rates in rule.limit.items()]
    else:
        limits = [("all", ", ".join(str(r) for r in rule.rates()) or "none")]
    return {
        "name": rule.name, "match": where, "identity": " + ".join(rule.identity),
        "limits": limits, "algorithm": rule.algorithm, "mode": rule.mode,
        "action": rule.action,
    }  # fmt: skip


def _series(window: FleetWindow, rule: str, verdict: str) -> list[int]:
    fields = window.series.get(rule, {})
    out = [0] * window.minutes
    for mode in ("enforce", "shadow"):
        for i, value in enumerate(fields.get(f"{verdict}|{mode}", ())):
            out[i] += value
    return out


def _rule_stats(window: FleetWindow, name: str) -> dict[str, Any]:
    allowed, rejected = _series(window, name, "allowed"), _series(window, name, "rejected")
    admitted = sum(allowed)
    near = window.total(name, "near")
    return {
        "chart": charts.timeline(name, allowed, rejected, window.first_minute),
        "allowed": admitted, "rejected": sum(rejected),
        "would_block": window.total(name, "rejected|shadow"),
        "other": {VERDICT_LABELS[f"{v}|enforce"]: window.total(name, f"{v}|enforce")
                  for v in ("challenged", "banned", "brownout", "error")
                  if window.total(name, f"{v}|enforce")},
        "near_share": f"{100 * near / admitted:.1f} %" if admitted else "none admitted",
        "near": near,
    }  # fmt: skip


def overview_page(console: Console, ctx: Ctx) -> Page:
    svc = console.service
    status = svc.status()
    enforced, checked = console.rulesets.enforced()
    ruleset: RuleSet | None = checked.ruleset if checked else None
    live = status["live"]
    window, why = read_fleet(console)
    rules = [describe(r) for r in ruleset.rules] if ruleset else []
    known = {r["name"] for r in rules}
    others: list[dict[str, Any]] = []
    totals: list[tuple[str, int]] = []
    if window is not None:
        for row in rules:
            row.update(_rule_stats(window, row["name"]))
        others = [{"name": name, **_rule_stats(window, name)}
                  for name in sorted(window.series) if name not in known]  # fmt: skip
        counted = window.verdict_totals()
        totals = [(label, counted.get(key, 0)) for key, label in VERDICT_LABELS.items()]
    return Page("overview.html", {
        "title": "Overview", "nav": "overview", "status": status, "enforced": enforced,
        "ruleset": ruleset, "live": live,
        "in_progress": live if live and live["stage"] != "enforce" else None,
        "rules": rules, "others": others, "fleet_error": why, "window": window,
        "verdicts": charts.bars("Decisions per verdict, last hour", totals) if totals else "",
        "verdict_total": sum(v for _, v in totals), "minutes": MINUTES,
    })  # fmt: skip
