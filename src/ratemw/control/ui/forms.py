"""The structured editor: a rule, the tiers and the allow and deny lists as form fields.

A form edits the parsed data of a base version (the enforced one by default) and the
result is written out again as a document, YAML unless the base is JSON; it is then
checked and diffed like a raw draft. Editing a rule changes only the keys the form
shows (a rule's ``lease``, ``burst``, ``cost``, ``penalty`` ... are kept). A document
written out loses the comments of the base; the raw editor keeps them.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import yaml

from ratemw.control.errors import InvalidRequest
from ratemw.control.ui.web import Form
from ratemw.control.versions import Version
from ratemw.rules._source import load_document
from ratemw.rules.model import ALGORITHMS, IDENTITY_KINDS

__all__ = [
    "IDENTITIES",
    "METHODS",
    "apply_lists",
    "apply_rule",
    "base_data",
    "dump",
    "rule_fields",
]

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
IDENTITIES = IDENTITY_KINDS
ALGORITHM_CHOICES = ALGORITHMS
_MANAGED = ("match", "identity", "limit", "algorithm", "concurrency", "action", "mode")
_SPLIT = re.compile(r"[\s,]+")
_MAX_LIST = 1000


def base_data(version: Version | None) -> tuple[dict[str, Any], str]:
    """The parsed data of ``version`` (a new document without one) and the format a
    form's result is written in."""
    if version is None:
        return {"version": 1, "rules": []}, "yaml"
    doc, _ = load_document(
        version.document.decode("utf-8-sig"), f"v{version.id}.{version.format}", version.format
    )
    if doc is None or not isinstance(doc.data, dict):
        raise InvalidRequest(f"version {version.id} does not parse: edit it as text")
    return copy.deepcopy(doc.data), "json" if version.format == "json" else "yaml"


class _Dumper(yaml.SafeDumper):
    """Rules-file style: sequences indented under their key, and collections of
    scalars inline (``match: {path: /login}``, ``tiers: [free, pro]``)."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def dump(data: dict[str, Any], fmt: str) -> bytes:
    """``data`` as a document: JSON, else YAML in the style of the rules docs."""
    if fmt == "json":
        return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=None, width=100)  # fmt: skip
    return text.encode("utf-8")


def _rules(data: dict[str, Any]) -> list[Any]:
    rules = data.get("rules")
    if rules is None:
        rules = data["rules"] = []
    if not isinstance(rules, list):
        raise InvalidRequest("the base document's 'rules' is not a list: edit it as text")
    return rules


def _find(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    for rule in _rules(data):
        if isinstance(rule, dict) and rule.get("name") == name:
            return rule
    return None


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def rule_fields(data: dict[str, Any], name: str) -> dict[str, Any]:
    """The form's values for rule ``name`` (empty for a new rule)."""
    rule = (_find(data, name) if name else None) or {}
    found = rule.get("match")
    match: dict[str, Any] = found if isinstance(found, dict) else {}
    limit = rule.get("limit")
    tiered = limit if isinstance(limit, dict) else {}
    methods = match.get("methods") or []
    return {
        "original": name if rule else "",
        "name": _text(rule.get("name")),
        "methods": [str(m).upper() for m in methods] if isinstance(methods, list) else [],
        "path": _text(match.get("path")),
        "route": _text(match.get("route")),
        "host": _text(match.get("host")),
        "identity": _text(rule.get("identity")),
        "limit": "" if tiered else _text(limit),
        "tier_limits": {str(k): _text(v) for k, v in tiered.items()},
        "algorithm": _text(rule.get("algorithm")),
        "concurrency": _text(rule.get("concurrency")),
        "action": _text(rule.get("action")),
        "mode": _text(rule.get("mode")),
    }


def _rates(text: str) -> str | list[str]:
    rates = [r.strip() for r in text.split(",") if r.strip()]
    return rates[0] if len(rates) == 1 else rates


def apply_rule(data: dict[str, Any], form: Form, tiers: list[str]) -> str:
    """Add or change (or, with ``remove``, delete) the rule of the form in ``data``;
    returns the rule's name. The loader validates the values afterwards."""
    original = form.text("original", max_chars=256)
    name = form.text("name", max_chars=256)
    rules = _rules(data)
    if form.text("remove"):
        kept = [r for r in rules if not (isinstance(r, dict) and r.get("name") == original)]
        if len(kept) == len(rules):
            raise InvalidRequest(f"there is no rule {original!r} to remove")
        data["rules"] = kept
        return original
    if not name:
        raise InvalidRequest("a rule needs a name")
    existing = _find(data, original) if original else None
    rule: dict[str, Any] = existing if existing is not None else {"name": name}
    for key in _MANAGED:
        rule.pop(key, None)
    rule["name"] = name
    match: dict[str, Any] = {}
    methods = [m.upper() for m in form.all("methods", max_items=len(METHODS))]
    if methods:
        match["methods"] = methods
    for key in ("path", "route", "host"):
        value = form.text(key)
        if value:
            match[key] = value
    rule["match"] = match
    identity = form.text("identity", max_chars=300)
    if identity:
        parts = [p for p in _SPLIT.split(identity) if p]
        rule["identity"] = parts[0] if len(parts) == 1 else parts
    per_tier = {t: form.text(f"limit_{t}") for t in tiers if form.text(f"limit_{t}")}
    concurrency = form.text("concurrency", max_chars=20)
    if concurrency:
        if not concurrency.isdigit():
            raise InvalidRequest("concurrency is a whole number of requests in flight")
        rule["concurrency"] = int(concurrency)
    elif per_tier:
        rule["limit"] = {t: _rates(v) for t, v in per_tier.items()}
    elif form.text("limit"):
        rule["limit"] = _rates(form.text("limit"))
    for key, allowed in (("algorithm", ALGORITHMS), ("action", ("reject", "challenge")),
                         ("mode", ("enforce", "shadow"))):  # fmt: skip
        value = form.text(key, max_chars=40)
        if value:
            if value not in allowed:
                raise InvalidRequest(f"{key} must be one of {', '.join(allowed)}")
            rule[key] = value
    if existing is None:
        rules.append(rule)
    return name


def _entries(text: str) -> list[str]:
    found = [line.strip() for line in text.splitlines() if line.strip()]
    if len(found) > _MAX_LIST:
        raise InvalidRequest(f"at most {_MAX_LIST} entries per list")
    return found


def apply_lists(data: dict[str, Any], form: Form) -> None:
    """Replace the tiers, the allow list and the deny list with the form's."""
    tiers = [t for t in _SPLIT.split(form.text("tiers", max_chars=5000)) if t]
    if len(tiers) > _MAX_LIST:
        raise InvalidRequest(f"at most {_MAX_LIST} tiers")
    allow = _entries(form.text("allow", max_chars=100_000))
    deny = _entries(form.text("deny", max_chars=100_000))
    for key, values in (("tiers", tiers), ("allow", allow), ("deny", deny)):
        if values:
            data[key] = values
        else:
            data.pop(key, None)
