"""Prometheus export under gunicorn: each worker mirrors its counters into
prometheus_client's own metrics, whose mmap files the ``/metrics`` app sums
(:mod:`ratemw.ops.prometheus` explains why)."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, TypeVar

from ratemw.ops.prometheus import (
    _COMBINE,
    _COUNTERS,
    _GAUGES,
    _HISTOGRAMS,
    _ZERO,
    Source,
    _combine,
    _Mode,
    _prometheus,
    _read,
    _series,
)
from ratemw.ops.stats import MetricsSnapshot

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram
    from prometheus_client.metrics import MetricWrapperBase

__all__ = ["MultiprocessExporter"]

_M = TypeVar("_M", bound="MetricWrapperBase")

logger = logging.getLogger("ratemw")


def _replay(bounds: tuple[float, ...], counts: Sequence[int], total: float) -> list[float]:
    # One value per observation inside its bucket (lo, hi], as ``le`` means; all move
    # alike from floor to ceiling so they sum to ``total``; +Inf takes what is left.
    finite = list(zip((0.0, *bounds[:-1]), bounds, counts[:-1], strict=True))
    overflow = counts[-1]
    low = sum(n * lo for lo, _, n in finite)
    span = sum(n * (hi - lo) for lo, hi, n in finite)
    spare = total - low - overflow * bounds[-1]
    share = min(max(spare / span, 0.0), 1.0) if span else 0.0
    values: list[float] = []
    for i, (lo, hi, n) in enumerate(finite):
        value = min(lo + share * (hi - lo), hi)
        if i:  # a value equal to the floor would land in the bucket below
            value = max(value, math.nextafter(lo, math.inf))
        values += [value] * n
    if overflow:
        rest = (total - sum(values)) / overflow
        values += [max(rest, math.nextafter(bounds[-1], math.inf))] * overflow
    return values


def _child(metric: _M, labels: tuple[str, ...]) -> _M:
    return metric.labels(*labels) if labels else metric


class MultiprocessExporter:
    """Mirrors sources into prometheus_client metrics, for multiprocess mode.

    Each :meth:`sync` adds to the counters and histograms what grew since the previous
    one (a source whose counters went down restarted, and counts from zero) and sets the
    gauges (``livesum``; ``livemax`` for breaker state, ``livemin`` for brownout). The
    metrics live in the private :attr:`registry`: in multiprocess mode their values go to
    the mmap files anyway; otherwise serve that registry.
    """

    def __init__(self, *sources: Source) -> None:
        _prometheus()
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self._sources = list(sources)
        self._counters: dict[str, Counter] = {
            field: Counter(name, doc, labels, registry=self.registry)
            for name, doc, labels, field in _COUNTERS
        }
        self._gauges: dict[str, tuple[_Mode, Gauge]] = {
            field: (mode, Gauge(name, doc, labels, registry=self.registry, multiprocess_mode=mode))
            for name, doc, labels, field, mode in _GAUGES
        }
        self._histograms: dict[str, Histogram] = {
            field: Histogram(name, doc, registry=self.registry, buckets=bounds)
            for name, doc, field, bounds in _HISTOGRAMS
        }
        self._last: dict[int, MetricsSnapshot] = {}
        self._gauge_labels: dict[str, set[tuple[str, ...]]] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._set_gauges([_ZERO])  # unlabelled gauges start at defaults: brownout 1.0, not 0

    def add(self, source: Source) -> None:
        """Also read ``source`` from the next :meth:`sync` on."""
        with self._lock:
            self._sources.append(source)

    def sync(self) -> None:
        """Read every source and push what changed since the previous call."""
        with self._lock:
            for index, snapshot in _read(self._sources):
                self._push(self._last.get(index, _ZERO), snapshot)
                self._last[index] = snapshot
            if self._last:  # a failing source keeps its last gauges
                self._set_gauges(list(self._last.values()))

    def start(self, interval_seconds: float = 1.0) -> None:
        """Call :meth:`sync` every ``interval_seconds`` in a daemon thread."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, args=(interval_seconds,), name="ratemw-metrics", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_seconds: float | None = None) -> None:
        """Stop the thread of :meth:`start`, which syncs one last time."""
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_seconds)

    def _run(self, interval_seconds: float) -> None:
        stopping = False
        while not stopping:
            stopping = self._stopping.wait(interval_seconds)
            try:
                self.sync()
            except Exception:  # keep exporting after an unexpected bug
                logger.exception("ratemw metrics sync failed")

    def _push(self, before: MetricsSnapshot, now: MetricsSnapshot) -> None:
        for field, counter in self._counters.items():
            old = _series(before, field)
            for labels, value in _series(now, field).items():
                grown = value - old.get(labels, 0.0)  # < 0: the source restarted from 0
                _child(counter, labels).inc(value if grown < 0 else grown)  # even 0: shown
        for field, histogram in self._histograms.items():
            old_h, new_h = getattr(before, field), getattr(now, field)
            counts = [n - o for n, o in zip(new_h.counts, old_h.counts, strict=True)]
            total = new_h.sum - old_h.sum
            if min(counts) < 0:  # the source restarted
                counts, total = list(new_h.counts), new_h.sum
            for value in _replay(new_h.bounds, counts, total):
                histogram.observe(value)

    def _set_gauges(self, snapshots: list[MetricsSnapshot]) -> None:
        for field, (mode, gauge) in self._gauges.items():
            current = _combine(snapshots, field, _COMBINE[mode])
            for labels in self._gauge_labels.get(field, set()) - current.keys():
                _child(gauge, labels).set(0)  # gone (multiprocess mode cannot remove)
            for labels, value in current.items():
                _child(gauge, labels).set(value)
            self._gauge_labels[field] = set(current)
