"""Rollout stages as documents: what the control plane publishes at each stage.

``enforce`` is the proposal as written; ``shadow`` sets every rule's ``mode:
shadow``; ``percent`` adds a top-level ``rollout: {enforce_percent: N}``. Derived
documents re-emit the parsed data in the proposal's own format, deterministically.
"""

from __future__ import annotations

import copy
import json
import re
from typing import TYPE_CHECKING, Any

import yaml

from ratemw.control import ControlError
from ratemw.rules._source import load_document

if TYPE_CHECKING:
    from ratemw.control.versions import Version

__all__ = ["STAGES", "UnknownStage", "number", "stage_document"]

STAGES = ("shadow", "percent", "enforce")


class UnknownStage(ControlError):
    """A stage that is not one of :data:`STAGES`."""


def number(value: float) -> int | float:
    """A percentage as written: 25, not 25.0."""
    return int(value) if float(value).is_integer() else value


def stage_document(version: Version, stage: str, percent: float = 100.0) -> tuple[bytes, str]:
    """The document published for ``version`` at ``stage``, and its format.

    ``enforce`` gives the proposed bytes unchanged. Other stages re-emit the parsed data
    in the proposal's format (comments and layout are not kept), so the same inputs
    always give the same bytes and a data plane reading a fixed file name still parses.
    """
    if stage == "enforce":
        return version.document, version.format
    doc, problems = load_document(
        version.document.decode("utf-8-sig"), f"v{version.id}.{version.format}", version.format
    )
    if doc is None or not isinstance(doc.data, dict):
        raise ControlError(f"version {version.id} no longer parses: {problems}")
    data = copy.deepcopy(doc.data)
    if stage == "shadow":
        for rule in data.get("rules") or ():
            if isinstance(rule, dict):
                rule["mode"] = "shadow"  # rules already in shadow stay in shadow
    elif stage == "percent":
        data["rollout"] = {"enforce_percent": number(percent)}
    else:
        raise UnknownStage(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    label = stage if stage == "shadow" else f"enforce_percent {number(percent)}"
    head = f"# ratemw control: version {version.id}, {label} (derived from the proposal)\n"
    if version.format == "json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    elif version.format == "toml":
        text = head + _toml(data)
    else:
        text = head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return text.encode("utf-8"), version.format


def _toml_key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]+", text) else json.dumps(text)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return json.dumps(str(value), ensure_ascii=False)  # JSON escapes are TOML escapes


def _toml(data: dict[str, Any]) -> str:
    """TOML for a rules document: top-level tables and [[rules]], other values inline."""
    head: list[str] = []
    tail: list[str] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tail += ["", f"[{_toml_key(key)}]"]
            tail += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tail += ["", f"[[{_toml_key(key)}]]"]
                tail += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items()]
        else:
            head.append(f"{_toml_key(key)} = {_toml_value(value)}")
    return "\n".join(head + tail).lstrip("\n") + "\n"
