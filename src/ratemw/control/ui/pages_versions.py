"""Versions: the list, one version (diff, validation, what-if preview, approvals,
rollout), and the approve, roll out and roll back actions (each a call of the REST
API's action)."""

from __future__ import annotations

from typing import Any

from ratemw.control.errors import InvalidRequest
from ratemw.control.http import _path_id
from ratemw.control.stages import number
from ratemw.control.ui.drafts import draft_changes, unified
from ratemw.control.ui.pages_preview import preview_context
from ratemw.control.ui.web import Console, Ctx, Form, Page, Redirect

__all__ = ["approve", "roll_back", "roll_out", "version_page", "versions_page"]

_PAGE = 50
_STAGES = {"shadow": "shadow", "percent": "a percentage", "enforce": "enforce"}


def versions_page(console: Console, ctx: Ctx) -> Page:
    svc = console.service
    before = _path_id("before", ctx.arg("before")) if ctx.arg("before") else None
    found = svc.list_versions(limit=_PAGE + 1, before=before)
    status = svc.status()
    return Page("versions.html", {
        "title": "Versions", "nav": "versions", "versions": found[:_PAGE],
        "older": found[_PAGE - 1].id if len(found) > _PAGE else None,
        "enforced": status["enforced_version"], "live": status["live"],
    })  # fmt: skip


def version_page(console: Console, ctx: Ctx) -> Page:
    svc = console.service
    version = svc.get_version(_path_id("id", ctx.params["id"]))
    status = svc.status()
    enforced = status["enforced_version"]
    checked = console.rulesets.of(version)
    diff: dict[str, Any] | None = None
    if enforced is not None and enforced != version.id:
        # What GET /v1/diff says, from the parsed versions the console keeps (a diff
        # re-parses both documents: 30 ms for 100 rules).
        old = svc.get_version(int(enforced))
        diff = {
            "same_rules": old.digest == version.digest,
            "unified": unified(old.document, version.document, f"v{old.id}.{old.format}",
                               f"v{version.id}.{version.format}"),
            "changes": draft_changes(console.rulesets.of(old).ruleset, checked.ruleset),
        }  # fmt: skip
    live = status["live"]
    approved = any(a["principal"] == ctx.principal.name for a in version.approvals)
    can_approve = (
        ctx.may("approve") and version.author != ctx.principal.name and not approved
        and version.status in ("proposed", "approved")
    )  # fmt: skip
    deployments = [d for d in svc.deployments() if d.version == version.id]
    preview = preview_context(console, version.id, enforced)
    return Page("version.html", {
        **preview,
        "title": f"Version {version.id}", "nav": "versions", "version": version,
        "document": version.document.decode("utf-8-sig", "replace"), "diff": diff,
        "enforced": enforced, "checked": checked, "live": live,
        "can_approve": can_approve, "approved_by_me": approved,
        "approvals_required": status["approvals_required"], "deployments": deployments,
        "number": number,
    })  # fmt: skip


def approve(console: Console, ctx: Ctx, form: Form) -> Redirect:
    vid = _path_id("id", ctx.params["id"])
    console.service.approve(ctx.principal, vid, form.text("comment", max_chars=2000))
    return Redirect(f"/ui/versions/{vid}", "approved")


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest("percent must be a number above 0 and below 100") from None
    return value


def roll_out(console: Console, ctx: Ctx, form: Form) -> Page | Redirect:
    """Roll a version out at a stage, after a confirmation step."""
    vid = _path_id("id", ctx.params["id"])
    stage = form.text("stage", max_chars=20)
    if stage not in _STAGES:
        raise InvalidRequest(f"unknown stage {stage!r}; use shadow, percent or enforce")
    percent = _percent(form.text("percent", max_chars=20)) if stage == "percent" else None
    if form.text("confirm") != "yes":
        shown = f"{number(percent)} %" if percent is not None else stage
        return Page("confirm.html", {
            "title": "Confirm the rollout", "nav": "versions",
            "question": f"Roll out version {vid} at {shown}?",
            "explain": _explain(stage, percent), "action": f"/ui/versions/{vid}/rollout",
            "fields": {"stage": stage, **({"percent": form.text("percent")} if percent else {})},
            "button": f"Roll out at {shown}", "back": f"/ui/versions/{vid}",
        })  # fmt: skip
    console.service.rollout(ctx.principal, vid, stage, percent)
    return Redirect(f"/ui/versions/{vid}", "rolled-out")


def _explain(stage: str, percent: float | None) -> str:
    if stage == "shadow":
        return ("Every rule runs in shadow: limiters count what they would block and "
                "reject nothing.")  # fmt: skip
    if stage == "percent":
        return (f"The rules are enforced for a stable {number(percent or 0)} % of identities; "
                "the rest run in shadow.")  # fmt: skip
    return "The version is published as proposed and enforced for everyone."


def roll_back(console: Console, ctx: Ctx, form: Form) -> Page | Redirect:
    """Republish the enforced version before what is live, after a confirmation step."""
    reason = form.text("reason", max_chars=2000)
    if form.text("confirm") != "yes":
        live = console.service.status()["live"]
        what = f"version {live['version']}" if live else "the live version"
        return Page("confirm.html", {
            "title": "Confirm the rollback", "nav": "overview",
            "question": f"Roll back {what}?",
            "explain": "The enforced version before it is published again, unchanged, and "
                       f"{what} is marked rolled back.",
            "action": "/ui/rollback", "fields": {"reason": reason},
            "button": "Roll back", "back": "/ui/",
        })  # fmt: skip
    deployment = console.service.rollback(ctx.principal, reason)
    return Redirect(f"/ui/versions/{deployment.version}", "rolled-back")
