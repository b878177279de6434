"""An SDK tracer with an in-memory exporter, installed for ratemw with ``otel.use``, and
server-span wrappers standing in for OpenTelemetry's WSGI and ASGI instrumentation."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from ratemw.ops import otel


class Traced:
    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("tests")

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def server_spans(self) -> list[dict[str, Any]]:
        """The decision attributes of each finished server span, in order."""
        return [
            {k: v for k, v in (s.attributes or {}).items() if k.startswith("ratemw.")}
            for s in self.exporter.get_finished_spans()
            if s.kind == SpanKind.SERVER
        ]

    def wsgi(self, app: Any) -> Any:
        def served(environ: dict[str, Any], start_response: Any) -> Any:
            with self.tracer.start_as_current_span("request", kind=SpanKind.SERVER):
                return list(app(environ, start_response))

        return served

    def asgi(self, app: Any) -> Any:
        async def served(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            with self.tracer.start_as_current_span("request", kind=SpanKind.SERVER):
                await app(scope, receive, send)

        return served


@pytest.fixture
def traced() -> Iterator[Traced]:
    t = Traced()
    otel.use(t.provider)
    try:
        yield t
    finally:
        otel.use(None)
        t.provider.shutdown()


def verdicts(spans: list[dict[str, Any]]) -> list[tuple[Any, Any, Any]]:
    return [(s.get("ratemw.rule"), s.get("ratemw.verdict"), s.get("ratemw.status")) for s in spans]
