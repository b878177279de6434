"""Prometheus multiprocess mode: one exporter per process, fed by every limiter in it.

prometheus_client keeps one value per metric object and process and rewrites the
process's file with it, so two exporters in one worker would overwrite each other's
numbers; :func:`process_exporter` hands every limiter of the process the same one.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any

from ratemw.ops.stats import MetricsSnapshot

__all__ = ["WeakSource", "process_exporter"]


class WeakSource:
    """``limiter.metrics`` without keeping the limiter alive; empty once it is gone."""

    def __init__(self, owner: Any) -> None:
        self._owner = weakref.ref(owner)

    def __call__(self) -> MetricsSnapshot:
        owner = self._owner()
        if owner is None:
            return MetricsSnapshot()
        snapshot: MetricsSnapshot = owner.metrics()
        return snapshot


_exporters: dict[int, Any] = {}  # pid -> the process's MultiprocessExporter
_lock = threading.Lock()


def _renew_lock() -> None:
    global _lock
    _lock = threading.Lock()  # another thread may have held it at fork time


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_lock)


def process_exporter() -> Any:
    """This process's ``MultiprocessExporter``, or ``None`` outside multiprocess mode or
    without prometheus-client."""
    from ratemw.ops.prometheus import multiprocess_enabled
    from ratemw.ops.prometheus_mp import MultiprocessExporter

    if not multiprocess_enabled():
        return None
    pid = os.getpid()
    with _lock:
        found = _exporters.get(pid)
        if found is None:
            _exporters.clear()  # a forked child: the parent's is not ours
            try:
                found = _exporters[pid] = MultiprocessExporter()
            except ImportError:  # prometheus-client is not installed
                return None
        return found
