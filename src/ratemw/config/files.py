"""``FileSource``: rules from a file, watched with watchdog or by polling."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratemw._deps import require
from ratemw.config.base import SourceDocument, SourceUnavailable, log
from ratemw.errors import MissingDependency
from ratemw.rules._source import format_for
from ratemw.rules.parse import read_rules

if TYPE_CHECKING:
    pass


# -- files ---------------------------------------------------------------------------


_QUIET_EVENTS = ("opened", "closed_no_write")


class _DirectoryWatches:
    """One watchdog observer per process, one watch per directory, many listeners.

    Watching the directory rather than the file is what survives an editor's
    rename-over and a Kubernetes ConfigMap's ``..data`` symlink swap: the file's
    inode changes, the directory's does not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observer: Any = None
        self._watches: dict[str, tuple[Any, set[threading.Event]]] = {}

    def dispatch(self, event: object) -> None:  # called by watchdog's thread
        if getattr(event, "event_type", "") in _QUIET_EVENTS:
            return  # our own reads open and close the file: not a change
        paths = (getattr(event, "src_path", ""), getattr(event, "dest_path", ""))
        dirs = {os.path.dirname(os.fsdecode(p)) for p in paths if p}
        with self._lock:
            listeners = [e for d, (_, es) in self._watches.items() if d in dirs for e in es]
            if not listeners:  # an event about a watched directory itself
                listeners = [e for _, es in self._watches.values() for e in es]
        for wake in listeners:
            wake.set()

    def add(self, directory: str, wake: threading.Event) -> None:
        """Raises ``OSError`` (e.g. the inotify limit) or ``MissingDependency``."""
        with self._lock:
            if self._observer is None:
                observers = require("watchdog.observers", extra="watch", purpose="FileSource")
                observer = observers.Observer()
                observer.daemon = True
                observer.start()
                self._observer = observer
            entry = self._watches.get(directory)
            if entry is None:
                watch = self._observer.schedule(self, directory, recursive=False)
                entry = self._watches[directory] = (watch, set())
            entry[1].add(wake)

    def remove(self, directory: str, wake: threading.Event) -> None:
        with self._lock:
            entry = self._watches.get(directory)
            if entry is None:
                return
            entry[1].discard(wake)
            if not entry[1]:
                del self._watches[directory]
                with contextlib.suppress(KeyError, OSError):  # the directory is gone
                    self._observer.unschedule(entry[0])


_directories = _DirectoryWatches()


class FileSource:
    """A rules file, watched with watchdog (extra ``watch``) or by polling ``os.stat``.

    ``mode`` is ``"auto"`` (watchdog when installed and a watch can be set, else
    polling), ``"watchdog"`` (raise if unavailable) or ``"poll"``. Polling runs in
    every mode, every ``poll_interval_seconds``, as a backstop for missed events. A
    change is read once no further event came for ``settle_seconds`` (an editor's
    write may take several system calls).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "auto",
        poll_interval_seconds: float = 1.0,
        settle_seconds: float = 0.05,
    ) -> None:
        if mode not in ("auto", "watchdog", "poll"):
            raise ValueError(f"mode must be 'auto', 'watchdog' or 'poll', got {mode!r}")
        self.path = Path(path)
        self.origin = os.fspath(self.path)
        self.mode = mode
        self.poll_interval_seconds = poll_interval_seconds
        self.settle_seconds = settle_seconds
        self.fmt = format_for(self.origin)
        self._wakes: set[threading.Event] = set()
        if mode == "watchdog":
            require("watchdog", extra="watch", purpose="FileSource")

    def read(self) -> SourceDocument | None:
        try:
            data = read_rules(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceUnavailable(f"{self.origin}: {exc.strerror or exc}") from exc
        return SourceDocument(data, self.origin, self.fmt)

    def _signature(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped link changes the inode
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _subscribe(self, wake: threading.Event) -> str | None:
        if self.mode == "poll":
            return None
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            _directories.add(directory, wake)
        except (OSError, MissingDependency) as exc:
            if self.mode == "watchdog":
                raise
            log.info("ratemw: polling %s every %gs (%s)", self.origin, self.poll_interval_seconds,
                     exc)  # fmt: skip
            return None
        return directory

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        wake = threading.Event()
        self._wakes.add(wake)
        directory = self._subscribe(wake)
        last_signature: tuple[int, ...] | None = None
        last_digest = ""
        try:
            first = True
            while not stop.is_set():
                signature = self._signature()
                if first or wake.is_set() or signature != last_signature:
                    # Let a burst of writes finish (an in-place write truncates first):
                    # wait for a quiet spell, no event and no stat change (bounded).
                    for _ in range(0 if first else 20):
                        wake.clear()
                        woken = wake.wait(self.settle_seconds)
                        now = self._signature()
                        if stop.is_set() or (not woken and now == signature):
                            break
                        signature = now
                    first = False
                    try:
                        doc = self.read()
                    except SourceUnavailable as exc:
                        log.warning("ratemw: cannot read rules: %s", exc)
                        doc = None
                    last_signature = signature
                    if doc is not None and doc.digest != last_digest:
                        last_digest = doc.digest
                        yield doc
                if not stop.is_set():
                    wake.wait(self.poll_interval_seconds)  # an event, close(), or the poll
        finally:
            self._wakes.discard(wake)
            if directory is not None:
                _directories.remove(directory, wake)

    def close(self) -> None:
        for wake in list(self._wakes):
            wake.set()

    def __repr__(self) -> str:
        return f"FileSource({self.origin!r})"


# -- Consul --------------------------------------------------------------------------
