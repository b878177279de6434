"""Exceptions raised by ratemw."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "MissingDependency",
    "Problem",
    "RatemwError",
    "StoreError",
    "log_decide_failure",
]

_logger = logging.getLogger("ratemw")


def log_decide_failure(exc: BaseException) -> None:
    """Log that deciding raised and the request was let through (fail open, loudly).

    No request data is logged: an exception's message may quote a header or a key, so
    only its type and the place it was raised are.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}" if tb is not None else "?"
    _logger.error(
        "ratemw: decide failed (%s at %s); request let through", type(exc).__name__, where
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


class StoreClosed(Exception):
    """The store is unreachable and the rule says ``on_store_error: closed``: the caller
    answers 503 with ``Retry-After`` of ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after
