"""The Django adapter puts the decision on the current server span while tracing."""

from __future__ import annotations

from django.test import Client, override_settings
from opentelemetry.trace import SpanKind

from ratemw.testing import ManualClock
from tests.integrations.django.settings import RULES
from tests.integrations.otel_spans import Traced, traced, verdicts

__all__ = ["traced"]  # the fixture, for pytest


def test_django(traced: Traced) -> None:
    clock = ManualClock()
    with override_settings(RATEMW={"RULES": RULES, "WORKERS": 1, "OPTIONS": {"clock": clock}}):
        client = Client()
        statuses = []
        for _ in range(3):
            with traced.tracer.start_as_current_span("request", kind=SpanKind.SERVER):
                statuses.append(client.post("/login").status_code)
    assert statuses == [200, 200, 429]
    assert verdicts(traced.server_spans()) == [
        ("login", "allowed", 200), ("login", "allowed", 200), ("login", "rejected", 429),
    ]  # fmt: skip
