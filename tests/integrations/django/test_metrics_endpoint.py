"""``metrics_view`` serves the decisions of Django's ``RateLimitMiddleware`` as Prometheus text.

This module is also the test's URLconf (``ROOT_URLCONF`` is overridden to it). The
default registry is process-wide and other tests' limiters may still be alive, so the
rule's name is unique to the test and only its samples are read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client, override_settings
from django.urls import path

from ratemw.ops.registry import live_limiters
from ratemw.testing import ManualClock
from ratemw_django import metrics_view
from tests.metrics_text import decisions, unique_rule

pytestmark = pytest.mark.usefixtures("single_process_metrics")


def limited(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [path("limited", limited), path("metrics", metrics_view)]


@pytest.fixture
def rule(clock: ManualClock) -> Iterator[str]:
    name = unique_rule()
    rules = {
        "version": 1,
        "rules": [{"name": name, "match": {"path": "/limited"}, "limit": "3/minute"}],
    }
    ratemw = {"RULES": rules, "WORKERS": 1, "OPTIONS": {"clock": clock}}
    with override_settings(RATEMW=ratemw, ROOT_URLCONF=__name__):
        yield name
    # The middleware built its limiter inside the test client; close it by its rule.
    for limiter in live_limiters():
        if any(cr.name == name for cr in limiter.snapshot.rules):
            limiter.close()


def test_metrics_view_counts_allowed_and_rejected(rule: str) -> None:
    client = Client()
    assert [client.get("/limited").status_code for _ in range(5)] == [200, 200, 200, 429, 429]

    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped["Content-Type"].startswith("text/plain")
    assert "RateLimit" not in scraped  # /metrics is not under the rule
    assert decisions(scraped.content.decode(), rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
    # Scraping is not a decision: a second scrape reads the same counts.
    assert decisions(client.get("/metrics").content.decode(), rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
