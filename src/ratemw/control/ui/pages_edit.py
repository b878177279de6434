"""Proposing a version: the raw editor, the rule form and the lists form.

Every way ends on the review: the document, ``ratemw check``'s problems with line and
column, the rule-level changes and the text diff against the enforced version, and
"Propose", which calls the REST API's propose action. The editor's script posts the
form with ``live=1`` as you type and gets the same review as JSON.
"""

from __future__ import annotations

from typing import Any

from ratemw.control.errors import InvalidRules, ServiceError, problem_json
from ratemw.control.http import _path_id
from ratemw.control.ui import forms
from ratemw.control.ui.drafts import check, draft_changes, unified
from ratemw.control.ui.web import Console, Ctx, Form, Json, Page, Redirect
from ratemw.control.versions import FORMATS, Version

__all__ = ["edit_page", "lists_page", "propose", "review", "review_lists", "review_rule",
           "rule_page"]  # fmt: skip


class TooLarge(ServiceError):
    status, code = 413, "too_large"


def _base(console: Console, ctx: Ctx, form: Form | None = None) -> Version | None:
    """The version a draft starts from: ``from`` if given, else the enforced one, else
    the newest."""
    raw = form.text("base", max_chars=30) if form is not None else ctx.arg("from")
    svc = console.service
    if raw:
        return svc.get_version(_path_id("from", raw))
    enforced, _ = console.rulesets.enforced()
    if enforced is not None:
        return enforced
    newest = svc.list_versions(limit=1)
    return newest[0] if newest else None


def _review(console: Console, ctx: Ctx, document: bytes, fmt: str, message: str,
            base: Version | None, *, live: bool = False, status: int = 200,
            nav: str = "edit") -> Page | Json:  # fmt: skip
    checked = check(document, fmt)
    enforced, before = console.rulesets.enforced()
    changes = draft_changes(before.ruleset if before else None, checked.ruleset)
    text_diff = ""
    if enforced is not None:
        text_diff = unified(enforced.document, document, f"v{enforced.id}.{enforced.format}",
                            f"draft.{fmt}")  # fmt: skip
    if live:
        return Json({
            "ok": checked.ruleset is not None, "errors": checked.errors,
            "warnings": checked.warnings, "changes": changes, "unified": text_diff,
            "problems": [{**problem_json(p), "text": str(p)} for p in checked.problems],
        })  # fmt: skip
    return Page("edit.html", {
        "title": "Review the draft", "nav": nav, "document": document.decode("utf-8", "replace"),
        "format": fmt, "formats": FORMATS, "message": message,
        "base": base.id if base else None, "checked": checked, "changes": changes,
        "unified": text_diff, "enforced": enforced.id if enforced else None, "reviewed": True,
    }, status)  # fmt: skip


def edit_page(console: Console, ctx: Ctx) -> Page:
    base = _base(console, ctx)
    document = base.document.decode("utf-8-sig", "replace") if base else "version: 1\nrules: []\n"
    return Page("edit.html", {
        "title": "Edit the rules", "nav": "edit", "document": document,
        "format": base.format if base else "yaml", "formats": FORMATS, "message": "",
        "base": base.id if base else None, "checked": None, "changes": None, "unified": "",
        "enforced": None, "reviewed": False,
    })  # fmt: skip


def _document(console: Console, form: Form) -> tuple[bytes, str, str]:
    cap = console.config.max_proposal_bytes
    # Browsers send a textarea's lines with CRLF (HTML's form submission): the
    # document's own line ends are LF.
    text = form.raw("document", max_chars=cap).replace("\r\n", "\n")
    document = text.encode("utf-8")
    if len(document) > cap:
        raise TooLarge(f"the document is larger than {cap} bytes", limit_bytes=cap)
    return document, form.text("format", "yaml", 10), form.text("message", max_chars=2000)


def review(console: Console, ctx: Ctx, form: Form) -> Page | Json:
    document, fmt, message = _document(console, form)
    base = _base(console, ctx, form)
    return _review(console, ctx, document, fmt, message, base, live=bool(form.text("live")))


def propose(console: Console, ctx: Ctx, form: Form) -> Page | Json | Redirect:
    document, fmt, message = _document(console, form)
    try:
        version, _ = console.service.propose(ctx.principal, document, fmt, message)
    except InvalidRules:  # audited by the action; shown with its problems
        return _review(console, ctx, document, fmt, message, _base(console, ctx, form),
                       status=422)  # fmt: skip
    return Redirect(f"/ui/versions/{version.id}", "proposed")


def rule_page(console: Console, ctx: Ctx) -> Page:
    base = _base(console, ctx)
    data, _ = forms.base_data(base)
    name = ctx.arg("name")
    fields = forms.rule_fields(data, name)
    return Page("rule.html", {
        "title": f"Edit rule {name}" if fields["original"] else "Add a rule", "nav": "edit",
        "rule": fields, "tiers": _tiers(data), "base": base.id if base else None,
        "methods": forms.METHODS, "identities": forms.IDENTITIES,
        "algorithms": forms.ALGORITHM_CHOICES,
        "names": [r.get("name") for r in data.get("rules") or [] if isinstance(r, dict)],
    })  # fmt: skip


def _tiers(data: dict[str, Any]) -> list[str]:
    tiers = data.get("tiers")
    return [str(t) for t in tiers] if isinstance(tiers, list) else []


def review_rule(console: Console, ctx: Ctx, form: Form) -> Page | Json:
    base = _base(console, ctx, form)
    data, fmt = forms.base_data(base)
    name = forms.apply_rule(data, form, _tiers(data))
    message = form.text("message", max_chars=2000) or f"rule {name}, from the console's form"
    return _review(console, ctx, forms.dump(data, fmt), fmt, message, base,
                   live=bool(form.text("live")))  # fmt: skip


def lists_page(console: Console, ctx: Ctx) -> Page:
    base = _base(console, ctx)
    data, _ = forms.base_data(base)
    values = {key: [str(v) for v in data.get(key) or []] for key in ("tiers", "allow", "deny")}
    return Page("lists.html", {
        "title": "Tiers, allow and deny lists", "nav": "edit", "lists": values,
        "base": base.id if base else None,
    })  # fmt: skip


def review_lists(console: Console, ctx: Ctx, form: Form) -> Page | Json:
    base = _base(console, ctx, form)
    data, fmt = forms.base_data(base)
    forms.apply_lists(data, form)
    message = form.text("message", max_chars=2000) or "tiers and lists, from the console's form"
    return _review(console, ctx, forms.dump(data, fmt), fmt, message, base,
                   live=bool(form.text("live")))  # fmt: skip
