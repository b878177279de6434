"""Validation and diffs of documents that are not versions yet (the editor's drafts).

Thin calls into the control service's own code: a draft is checked by the validation
a proposal goes through (the limiters' loader, with ``ratemw check``'s problems and
their line and column), and compared with the enforced version by the same rule-level
diff (:mod:`ratemw.config.diff`). Parsed versions are cached by id: a version's
document never changes.
"""

from __future__ import annotations

import difflib
import threading
from collections import OrderedDict
from dataclasses import dataclass

from ratemw.config.diff import diff_rulesets, format_diff
from ratemw.control.service import ControlService
from ratemw.control.versions import FORMATS, Version, _validate
from ratemw.errors import Problem
from ratemw.rules.model import RuleSet

__all__ = ["Checked", "RuleSets", "check", "draft_changes", "unified"]

_CACHED = 256


@dataclass(frozen=True, slots=True)
class Checked:
    """A document's validation: the rule set (None when invalid) and every problem."""

    ruleset: RuleSet | None
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def warnings(self) -> int:
        return len(self.problems) - self.errors


def check(document: bytes, fmt: str) -> Checked:
    """What proposing ``document`` would say of it (no version is stored)."""
    if fmt not in FORMATS:
        return Checked(None, (Problem("draft", 0, 0, f"unknown format {fmt!r}"),))
    ruleset, problems = _validate(document, fmt)
    return Checked(ruleset, tuple(problems))


class RuleSets:
    """Parsed versions, by id (bounded, least recently used out)."""

    def __init__(self, service: ControlService) -> None:
        self._service = service
        self._cache: OrderedDict[int, Checked] = OrderedDict()
        self._lock = threading.Lock()

    def of(self, version: Version) -> Checked:
        with self._lock:
            found = self._cache.get(version.id)
            if found is not None:
                self._cache.move_to_end(version.id)
                return found
        found = check(version.document, version.format)
        with self._lock:
            self._cache[version.id] = found
            while len(self._cache) > _CACHED:
                self._cache.popitem(last=False)
        return found

    def enforced(self) -> tuple[Version | None, Checked | None]:
        """The enforced version and its rule set, or (None, None) before any."""
        vid = self._service.status()["enforced_version"]
        if vid is None:
            return None, None
        version = self._service.get_version(int(vid))
        return version, self.of(version)


def unified(old: bytes, new: bytes, old_name: str, new_name: str) -> str:
    """A unified diff of two documents' text."""
    lines = difflib.unified_diff(
        old.decode("utf-8-sig", "replace").splitlines(keepends=True),
        new.decode("utf-8-sig", "replace").splitlines(keepends=True),
        fromfile=old_name, tofile=new_name,
    )  # fmt: skip
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def draft_changes(before: RuleSet | None, after: RuleSet | None) -> list[str] | None:
    """Rule-level changes from ``before`` to ``after`` (None when either is invalid)."""
    if before is None or after is None:
        return None
    return format_diff(diff_rulesets(before, after))
