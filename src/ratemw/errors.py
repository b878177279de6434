"""Exceptions raised by ratemw."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "MissingDependency",
    "MissingExtra",
    "Problem",
    "RatemwError",
    "StoreError",
    "log_decide_failure",
    "log_identity_failure",
]

_logger = logging.getLogger("ratemw")
#: distinct causes of identity failures remembered (and so logged once each)
MAX_IDENTITY_CAUSES = 256
_causes: set[tuple[str, str, str]] = set()
_causes_lock = threading.Lock()


def _raised_at(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised (its innermost frame), or ``?``."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"


def log_decide_failure(exc: BaseException) -> None:
    """Log that deciding raised and the request was let through (fail open, loudly).

    No request data is logged: an exception's message may quote a header or a key, so
    only its type and the place it was raised are.
    """
    _logger.error(
        "ratemw: decide failed (%s at %s); request let through",
        type(exc).__name__,
        _raised_at(exc),
    )


def log_identity_failure(exc: BaseException, source: str, fallback: str) -> None:
    """Log that ``source`` (a user getter, a tier resolver) raised, once per cause.

    A cause is the exception's type, ``source`` and the place it was raised: a getter
    that fails on every request is one line, not one per request. At most
    :data:`MAX_IDENTITY_CAUSES` causes are remembered; past that, new ones are not
    logged (one line says so). As for :func:`log_decide_failure`, the exception's
    message is not logged: it may quote request data.
    """
    where = _raised_at(exc)
    cause = (f"{type(exc).__module__}.{type(exc).__qualname__}", source, where)
    with _causes_lock:
        if cause in _causes:
            return
        full = len(_causes) >= MAX_IDENTITY_CAUSES
        if full and ("", "", "") in _causes:
            return
        _causes.add(("", "", "") if full else cause)
    if full:
        _logger.error(
            "ratemw: %d distinct identity failures logged; further ones are not",
            MAX_IDENTITY_CAUSES,
        )
        return
    _logger.error(
        "ratemw: %s raised %s at %s; %s (logged once per cause)",
        source,
        type(exc).__name__,
        where,
        fallback,
    )


class RatemwError(Exception):
    """Base class of every error ratemw raises."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a rules file: where it is and what is wrong.

    ``line`` and ``column`` are 1-based; ``0`` means the position is unknown.
    ``severity`` is ``"error"`` or ``"warning"``.
    """

    file: str
    line: int
    column: int
    reason: str
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.reason}"


class ConfigError(RatemwError):
    """A rules file that cannot be used; ``problems`` lists every error found."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: tuple[Problem, ...] = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems) or "invalid rules")

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")


class StoreError(RatemwError):
    """A backing store (Redis) failed; the limiter picks the fallback policy."""


class MissingDependency(RatemwError, ImportError):
    """An optional dependency is not installed; the message names the extra."""


class MissingExtra(ConfigError, MissingDependency):
    """Rules that need an optional dependency which is not installed (``identity.jwt``
    without PyJWT): a :class:`ConfigError` (a live source keeps its last good version)
    and a :class:`MissingDependency`, whose message names the extra to install."""


class StoreClosed(Exception):
    """The store is unreachable and the rule says ``on_store_error: closed``: the caller
    answers 503 with ``Retry-After`` of ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after
