"""What every rule source shares: the document type, the protocol, back-off."""

from __future__ import annotations

import hashlib
import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ratemw.errors import RatemwError
from ratemw.rules._source import format_for

if TYPE_CHECKING:
    pass

log = logging.getLogger("ratemw.config")
# Our own generator: the global one belongs to the application (and its tests).
_JITTER = random.Random()

_MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One version of a rules document: its bytes, where they came from, and the format
    (``"yaml"``, ``"toml"``, ``"json"``, or ``None`` to infer it from origin and bytes)."""

    data: bytes
    origin: str
    fmt: str | None = None

    @property
    def digest(self) -> str:
        """sha256 of the bytes (not the rules version, which ignores formatting)."""
        return hashlib.sha256(self.data).hexdigest()


class SourceUnavailable(RatemwError):
    """A source could not be read (file unreadable, Consul or Redis unreachable)."""


class Source(Protocol):
    """What :class:`ratemw.config.LiveRules` watches."""

    origin: str

    def read(self) -> SourceDocument | None:
        """The current document, ``None`` if absent; raises :class:`SourceUnavailable`."""

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        """Yield the current document, then each changed one, until ``stop`` is set."""

    def close(self) -> None:
        """Release connections and wake a blocked ``watch``. Idempotent."""


def backoff(failures: int, base: float) -> float:
    # Exponential with "equal jitter": half fixed, half random, capped.
    delay = min(_MAX_BACKOFF_SECONDS, base * 2.0 ** max(0, failures - 1))
    return delay / 2 + _JITTER.uniform(0, delay / 2)


def key_format(key: str, explicit: str | None) -> str | None:
    # A key named like a file (``ratemw/rules.toml``) says its format; else the loader
    # looks at the bytes.
    return explicit or format_for(key, "") or None
