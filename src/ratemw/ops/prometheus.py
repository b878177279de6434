"""Prometheus export of ratemw's counters (``pip install 'ratemw[prometheus]'``).

One process: :func:`register` puts a :class:`RatemwCollector` in a registry, which reads
each source (``limiter.metrics``) at scrape time.

gunicorn (``PROMETHEUS_MULTIPROC_DIR`` set): prometheus_client then ignores custom
collectors and sums the mmap files its ordinary ``Counter`` / ``Gauge`` / ``Histogram``
write in every worker. So each worker runs a
:class:`~ratemw.ops.prometheus_mp.MultiprocessExporter` (made after the
fork) that pushes into such metrics, of the same names, what grew since its last
``sync()``; :func:`wsgi_app` / :func:`asgi_app` serve the sum. Histograms there: a
``Histogram`` only offers ``observe()``, so each new observation is replayed once at a
value inside its bucket, spread so that buckets, ``_count`` and (up to float rounding)
``_sum`` are exact. That is one ``observe`` per new observation; decisions are sampled.
"""

from __future__ import annotations

import logging
import math
import operator
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate
from typing import TYPE_CHECKING, Literal, TypeVar
from weakref import WeakKeyDictionary

from ratemw._deps import require
from ratemw.ops.registry import live_limiters
from ratemw.ops.stats import DECISION_BUCKETS, STORE_BUCKETS, MetricsSnapshot

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics import MetricWrapperBase
    from prometheus_client.metrics_core import Metric

    from ratemw.types import ASGIApp, WSGIApplication

__all__ = ["RatemwCollector", "asgi_app", "multiprocess_enabled", "register", "render",
           "wsgi_app"]  # fmt: skip

logger = logging.getLogger("ratemw")

#: what ``limiter.metrics`` is
Source = Callable[[], MetricsSnapshot]
_Series = dict[tuple[str, ...], float]
_Mode = Literal["livesum", "livemax", "livemin"]
_M = TypeVar("_M", bound="MetricWrapperBase")

_RRT = ("rule", "route", "tier")
# name (prometheus_client adds ``_total``), help, label names, MetricsSnapshot field
_COUNTERS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("ratemw_decisions", "Rate limit decisions.", (*_RRT, "verdict", "mode"), "decisions"),
    ("ratemw_near_limit", "Admitted with at most 20% of the quota left.", _RRT, "near_limit"),
    ("ratemw_store_errors", "Failed store calls.", (), "store_errors"),
    ("ratemw_lease_calls", "Store calls for leases.", (), "lease_calls"),
    ("ratemw_config_reloads", "Rules reloads by result.", ("result",), "config_reloads"),
    ("ratemw_spike_alerts", "Traffic spike alerts.", ("rule",), "spike_alerts"),
    ("ratemw_bans", "Bans imposed.", ("rule",), "bans"),
)
# name, help, label names, field, how sources (and worker processes) combine
_GAUGES: tuple[tuple[str, str, tuple[str, ...], str, _Mode], ...] = (
    # max, not sum: two limiters seeing one open node still mean "open"
    ("ratemw_breaker_state", "Store breaker: 0 closed, 1 half-open, 2 open.", ("node",),
     "breaker_state", "livemax"),
    ("ratemw_inflight", "Requests holding a concurrency slot.", ("rule",), "inflight", "livesum"),
    ("ratemw_keys", "Keys tracked per rule.", ("rule",), "keys", "livesum"),
    # max: with Redis every process holds every ban of the fleet
    ("ratemw_banned", "Active bans.", (), "banned", "livemax"),
    ("ratemw_brownout_factor", "Quota factor under brownout (1 = none).", (),
     "brownout_factor", "livemin"),
)  # fmt: skip
_COMBINE: dict[_Mode, Callable[[float, float], float]] = {
    "livesum": operator.add, "livemax": max, "livemin": min,
}  # fmt: skip
_HISTOGRAMS: tuple[tuple[str, str, str, tuple[float, ...]], ...] = (
    ("ratemw_decision_seconds", "Sampled decision latency.", "decision_seconds", DECISION_BUCKETS),
    ("ratemw_store_latency_seconds", "Store call latency.", "store_latency", STORE_BUCKETS),
)
_ZERO = MetricsSnapshot()


def _prometheus() -> None:
    require("prometheus_client", extra="prometheus", purpose="ratemw metrics")


def _series(snapshot: MetricsSnapshot, field: str) -> _Series:
    value = getattr(snapshot, field)
    if isinstance(value, dict):
        return {tuple(k): float(v) for k, v in value.items()}
    return {(): float(value)}


def _combine(
    snapshots: Iterable[MetricsSnapshot], field: str, op: Callable[[float, float], float]
) -> _Series:
    out: _Series = {}
    for snapshot in snapshots:
        for labels, value in _series(snapshot, field).items():
            out[labels] = op(out[labels], value) if labels in out else value
    return out


def _read(sources: Sequence[Source]) -> Iterator[tuple[int, MetricsSnapshot]]:
    for index, source in enumerate(sources):
        try:
            yield index, source()
        except Exception:  # one broken limiter must not blank the whole scrape
            logger.warning("ratemw metrics source %r failed; skipped", source, exc_info=True)


class RatemwCollector:
    """A prometheus_client collector reading ``MetricsSnapshot`` sources at scrape time.

    Counters and histograms are summed over sources per label set; gauges too, except
    ``ratemw_breaker_state`` and ``ratemw_banned`` (max) and ``ratemw_brownout_factor``
    (min). A source that
    raises is logged (logger ``ratemw``, warning) and left out of that scrape.
    """

    def __init__(self, *sources: Source) -> None:
        _prometheus()
        self._sources: list[Source] = []
        self._lock = threading.Lock()
        for source in sources:
            self.add(source)

    def add(self, source: Source) -> None:
        """Also read ``source``; adding one already read does nothing."""
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def describe(self) -> list[Metric]:
        # Names without samples: lets a registry catch clashes without reading sources.
        return list(self._families([]))

    def collect(self) -> Iterator[Metric]:
        yield from self._families([snapshot for _, snapshot in _read(self._current())])

    def _current(self) -> list[Source]:
        with self._lock:
            return list(self._sources)

    def _families(self, snapshots: list[MetricsSnapshot]) -> Iterator[Metric]:
        from prometheus_client import core
        from prometheus_client.utils import floatToGoString

        for name, doc, labels, field in _COUNTERS:
            counter = core.CounterMetricFamily(name, doc, labels=labels)
            for key, value in _combine(snapshots, field, operator.add).items():
                counter.add_metric(key, value)
            yield counter
        for name, doc, labels, field, mode in _GAUGES:
            gauge = core.GaugeMetricFamily(name, doc, labels=labels)
            for key, value in _combine(snapshots, field, _COMBINE[mode]).items():
                gauge.add_metric(key, value)
            yield gauge
        for name, doc, field, _ in _HISTOGRAMS:
            histogram = core.HistogramMetricFamily(name, doc, labels=())
            parts = [getattr(snapshot, field) for snapshot in snapshots]
            if parts:  # HistogramData counts per bucket; Prometheus buckets are cumulative
                counts = accumulate(map(sum, zip(*(p.counts for p in parts), strict=True)))
                les = map(floatToGoString, (*parts[0].bounds, math.inf))
                buckets = [(le, float(n)) for le, n in zip(les, counts, strict=True)]
                histogram.add_metric([], buckets, sum(p.sum for p in parts))
            yield histogram


_registered: WeakKeyDictionary[CollectorRegistry, RatemwCollector] = WeakKeyDictionary()
_registered_lock = threading.Lock()


def register(source: Source, registry: CollectorRegistry | None = None) -> RatemwCollector:
    """Export ``source`` (e.g. ``limiter.metrics``) from ``registry``.

    ``registry`` defaults to ``prometheus_client.REGISTRY``. One collector serves each
    registry: later calls add their source to it. Raises ``MissingDependency`` without
    prometheus-client.
    """
    _prometheus()
    from prometheus_client import REGISTRY

    target = REGISTRY if registry is None else registry
    with _registered_lock:
        collector = _registered.get(target)
        if collector is None:
            # The default registry's collector also reads every live limiter.
            kind = _EveryLimiter if target is REGISTRY else RatemwCollector
            collector = _registered[target] = kind(source)
            target.register(collector)
        else:
            collector.add(source)
    return collector


def multiprocess_enabled() -> bool:
    """Whether prometheus_client runs in multiprocess mode (its env var is set)."""
    env = os.environ
    return bool(env.get("PROMETHEUS_MULTIPROC_DIR") or env.get("prometheus_multiproc_dir"))


def _serving(registry: CollectorRegistry | None) -> CollectorRegistry:
    _prometheus()
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    if registry is not None:
        return registry
    if not multiprocess_enabled():
        _serve_every_limiter()
        return REGISTRY
    fresh = CollectorRegistry()  # as prometheus_client prescribes for gunicorn
    multiprocess.MultiProcessCollector(fresh)  # type: ignore[no-untyped-call]
    return fresh


def wsgi_app(registry: CollectorRegistry | None = None) -> WSGIApplication:
    """A WSGI ``/metrics`` app for ``registry``; without one, the default registry (which
    then exports every limiter of the process) or, in multiprocess mode, the sum of every
    worker's files (each worker's operations loop writes its own)."""
    serving = _serving(registry)
    from prometheus_client import make_wsgi_app

    return make_wsgi_app(serving)


def asgi_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """The ASGI twin of :func:`wsgi_app`."""
    serving = _serving(registry)
    from prometheus_client import make_asgi_app

    return make_asgi_app(serving)


class _EveryLimiter(RatemwCollector):
    """Also reads every limiter alive in this process, whenever it was made."""

    def _current(self) -> list[Source]:
        given = super()._current()
        return given + [s for s in (lim.metrics for lim in live_limiters()) if s not in given]


def _serve_every_limiter() -> None:
    from prometheus_client import REGISTRY

    with _registered_lock:
        if REGISTRY not in _registered:
            _registered[REGISTRY] = collector = _EveryLimiter()
            REGISTRY.register(collector)


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The text exposition of ``registry`` (see :func:`wsgi_app`) and its content type,
    for a framework view: ``body, content_type = render()``."""
    serving = _serving(registry)
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(serving), CONTENT_TYPE_LATEST
