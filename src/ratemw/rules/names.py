"""Rule and tier names: which are valid, and how a name is shown in messages and logs.

Names reach response headers, problem+json, metric labels and Redis keys, so they are
held to :data:`~ratemw.rules.model.NAME_PATTERN`; a name shown in a message is
shortened past the longest valid one, so hostile input cannot flood a log line.
"""

from __future__ import annotations

import re

from ratemw.rules.model import NAME_PATTERN

__all__ = ["NAME", "name_problem", "shown"]

#: a valid rule or tier name (see NAME_PATTERN)
NAME = re.compile(NAME_PATTERN)
_NAME_HELP = (
    "ASCII letters, digits and _ . : # < > / -, starting with a letter, digit or _, "
    "at most 256 characters"
)


def shown(name: str) -> str:
    """``repr(name)``, shortened past the longest valid name (names in messages and logs)."""
    return repr(name if len(name) <= 256 else name[:80] + "...")


def name_problem(name: str, what: str = "name") -> str | None:
    """Why ``name`` is not a valid rule or tier name, or ``None`` when it is."""
    if NAME.fullmatch(name):
        return None
    return f"{what} {shown(name)} is not allowed: use {_NAME_HELP}"
