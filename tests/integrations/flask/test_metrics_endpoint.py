"""``metrics_view`` serves the decisions of a Flask app's limiter as Prometheus text.

The default registry is process-wide and other tests' limiters may still be alive, so
the rule's name is unique to the test and only its samples are read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask

from ratemw.testing import ManualClock
from ratemw_flask import RateMW, metrics_view
from tests.metrics_text import decisions, unique_rule

pytestmark = pytest.mark.usefixtures("single_process_metrics")


@pytest.fixture
def rule() -> str:
    return unique_rule()


@pytest.fixture
def app(clock: ManualClock, rule: str) -> Iterator[Flask]:
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = {
        "version": 1,
        "rules": [{"name": rule, "match": {"path": "/limited"}, "limit": "3/minute"}],
    }

    @app.get("/limited")
    def limited() -> str:
        return "ok"

    app.add_url_rule("/metrics", view_func=metrics_view)
    RateMW(app, clock=clock)
    yield app
    app.extensions["ratemw"].limiter.close()


def test_metrics_view_counts_allowed_and_rejected(app: Flask, rule: str) -> None:
    client = app.test_client()
    assert [client.get("/limited").status_code for _ in range(5)] == [200, 200, 200, 429, 429]

    scraped = client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.mimetype == "text/plain"
    assert "RateLimit" not in scraped.headers  # /metrics is not under the rule
    assert decisions(scraped.get_data(as_text=True), rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
    # Scraping is not a decision: a second scrape reads the same counts.
    assert decisions(client.get("/metrics").get_data(as_text=True), rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
