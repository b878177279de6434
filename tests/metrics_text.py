"""Reading ``/metrics`` text in the integrations' tests.

The default registry is process-wide and other tests' limiters may still be alive, so
each test names its rule uniquely (:func:`unique_rule`) and reads only its samples.
"""

from __future__ import annotations

import uuid

from prometheus_client.parser import text_string_to_metric_families


def unique_rule() -> str:
    return f"metrics-{uuid.uuid4().hex}"


def decisions(text: str, rule: str) -> dict[tuple[str, str, str, str], float]:
    """``ratemw_decisions_total`` of ``rule``: (route, tier, verdict, mode) -> value."""
    return {
        (s.labels["route"], s.labels["tier"], s.labels["verdict"], s.labels["mode"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "ratemw_decisions_total" and s.labels.get("rule") == rule
    }
