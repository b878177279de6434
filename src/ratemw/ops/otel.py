"""OpenTelemetry (``pip install 'ratemw[otel]'``): a span per store call, the decision on
the current span, and meters that mirror the Prometheus metrics.

ratemw only uses the OpenTelemetry API; the application installs the SDK and its
exporters. Nothing is traced until a real tracer provider is set: :func:`refresh` looks
once per limiter and then once per operations pass (every 0.5 s). While tracing is on,
each limiter's ``decide`` is a wrapper that puts the decision on the current span; while
it is off, the wrapper is not there and a decision costs nothing more. A local decision
never makes a span of its own.
The names are in :data:`SPAN_NAMES`, :data:`ATTRIBUTES` and :func:`meter_names`
(docs/operations.md, "OpenTelemetry").
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ratemw.ops.prometheus import _COMBINE, _COUNTERS, _GAUGES, Source, _combine, _read
from ratemw.ops.registry import all_limiters, live_limiters

if TYPE_CHECKING:
    from ratemw.decision import Decision

__all__ = [
    "ATTRIBUTES",
    "SPAN_NAMES",
    "annotate",
    "instrument_meters",
    "meter_names",
    "refresh",
    "store_span",
    "use",
]

#: span names: one per store call (``ratemw.store.take``, ``…give``, ``…heartbeat``, …)
SPAN_NAMES = ("ratemw.store.<operation>",)
#: attributes set on the current (server) span for each decision, and on store spans
ATTRIBUTES = {
    "ratemw.rule": "the rules that decided, comma-separated in rule order",
    "ratemw.tier": "the tier the request was counted in (empty: none)",
    "ratemw.verdict": "allowed, rejected, challenged, banned, brownout or denied",
    "ratemw.mode": "enforce, or shadow when only shadow rules would have rejected",
    "ratemw.status": "the HTTP status ratemw answered or let through (200)",
    "ratemw.store.operation": "on a store span: take, give, heartbeat, slot_acquire, …",
}

_VERDICT_BY_ACTION = {"reject": "rejected", "challenge": "challenged", "ban": "banned"}

#: True while a real (SDK) tracer provider is installed; read on every decision
active = False
_tracer: Any = None
_provider: Any = None  # given to use(); else the global provider
_missing = False


def use(tracer_provider: Any) -> None:
    """Trace with ``tracer_provider`` instead of the global one (``None``: the global)."""
    global _provider, _tracer
    _provider, _tracer = tracer_provider, None
    refresh()


def refresh() -> bool:
    """Look whether a real tracer provider is installed now; return whether tracing is on."""
    global active, _tracer, _missing
    if _missing:
        return False
    try:
        from opentelemetry import trace
    except ImportError:  # not installed: looked for once, not on every pass
        active, _tracer, _missing = False, None, True
        return False
    provider = _provider if _provider is not None else trace.get_tracer_provider()
    on = not isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
    if on and _tracer is None:
        _tracer = provider.get_tracer("ratemw")
    elif not on:
        _tracer = None
    if on != active:
        active = on
        for limiter in all_limiters():  # each swaps in (or out) its traced decide
            limiter._set_tracing(on)
    return on


@contextlib.contextmanager
def store_span(operation: str) -> Iterator[None]:
    """A client span around one store call, a child of whatever span is current."""
    tracer = _tracer
    if tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with tracer.start_as_current_span(
        f"ratemw.store.{operation}",
        kind=SpanKind.CLIENT,
        attributes={"ratemw.store.operation": operation, "db.system": "redis"},
    ):
        yield


def annotate(decision: Decision) -> None:
    """Put ``decision`` on the current span, when tracing is on and the span records."""
    if not active:
        return
    from opentelemetry import trace

    span = trace.get_current_span()
    if not span.is_recording():
        return
    rules: list[str] = []
    tier = ""
    for policy, _state in decision._pairs():
        name = getattr(getattr(policy, "rule", None), "name", "")
        if name and name not in rules:
            rules.append(name)
        tier = tier or (getattr(policy, "tier", "") or "")
    rules.extend(r for r in decision.violated if r not in rules)
    if decision.allowed:
        verdict = "allowed"
    elif decision.status == 403:
        verdict = "denied"
    elif decision.action == "brownout":
        verdict = "brownout"
    else:
        verdict = _VERDICT_BY_ACTION.get(decision.action, "rejected")
    span.set_attributes(
        {
            "ratemw.rule": ",".join(rules),
            "ratemw.tier": tier,
            "ratemw.verdict": verdict,
            "ratemw.mode": "shadow" if decision.shadow and decision.allowed else "enforce",
            "ratemw.status": decision.status,
        }
    )


def meter_names() -> list[str]:
    """The OpenTelemetry instrument names, one per Prometheus counter and gauge."""
    return [_otel_name(c[0]) for c in _COUNTERS] + [_otel_name(g[0]) for g in _GAUGES]


def _otel_name(prometheus_name: str) -> str:
    return prometheus_name.replace("ratemw_", "ratemw.", 1)


def _observe(
    field: str,
    labels: tuple[str, ...],
    combine: Callable[[float, float], float],
    given: Sequence[Source] | None,
) -> Callable[[Any], Iterable[Any]]:
    from opentelemetry.metrics import Observation

    def callback(_options: Any) -> Iterable[Any]:
        sources = list(given) if given is not None else [lim.metrics for lim in live_limiters()]
        snapshots = [snapshot for _, snapshot in _read(sources)]
        series = _combine(snapshots, field, combine)
        return [
            Observation(value, dict(zip(labels, key, strict=False)))
            for key, value in series.items()
        ]

    return callback


def instrument_meters(
    meter_provider: Any = None, sources: Sequence[Source] | None = None
) -> list[Any]:
    """Observable instruments mirroring the Prometheus counters and gauges, read at each
    collection from ``sources`` (``limiter.metrics``; default: every live limiter of this
    process); returns the instruments.

    Histograms are not mirrored (OpenTelemetry has no asynchronous histogram): store
    latency is on the store spans, decision latency on Prometheus.
    """
    from opentelemetry import metrics

    meter = (meter_provider or metrics.get_meter_provider()).get_meter("ratemw")
    made = []
    for name, doc, labels, field in _COUNTERS:
        made.append(
            meter.create_observable_counter(
                _otel_name(name), callbacks=[_observe(field, labels, operator.add, sources)],
                description=doc,
            )
        )  # fmt: skip
    for name, doc, labels, field, mode in _GAUGES:
        made.append(
            meter.create_observable_gauge(
                _otel_name(name), callbacks=[_observe(field, labels, _COMBINE[mode], sources)],
                description=doc,
            )
        )  # fmt: skip
    return made
