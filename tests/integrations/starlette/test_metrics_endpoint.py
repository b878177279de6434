"""``metrics_endpoint`` serves the decisions of a Starlette app's limiter as Prometheus text.

The default registry is process-wide and other tests' limiters may still be alive, so
the rule's name is unique to the test and only its samples are read.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Iterator

import pytest
import starlette.exceptions
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ratemw import AsyncLimiter
from ratemw.testing import ManualClock
from ratemw_starlette import RateLimitMiddleware, metrics_endpoint
from tests.metrics_text import decisions, unique_rule

pytestmark = pytest.mark.usefixtures("single_process_metrics")

with warnings.catch_warnings():
    # Starlette 1.x prefers httpx2 for its TestClient and warns when it finds httpx.
    # (no such warning class before Starlette 1.x: then there is nothing to silence)
    warnings.simplefilter(
        "ignore",
        getattr(starlette.exceptions, "StarletteDeprecationWarning", PendingDeprecationWarning),
    )
    from starlette.testclient import TestClient


@pytest.fixture
def rule() -> str:
    return unique_rule()


@pytest.fixture
def limiter(clock: ManualClock, rule: str) -> Iterator[AsyncLimiter]:
    rules = {
        "version": 1,
        "rules": [{"name": rule, "match": {"path": "/limited"}, "limit": "3/minute"}],
    }
    limiter = AsyncLimiter(rules, clock=clock)
    yield limiter
    asyncio.run(limiter.aclose())


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


def test_metrics_endpoint_counts_allowed_and_rejected(limiter: AsyncLimiter, rule: str) -> None:
    app = Starlette(
        routes=[Route("/limited", ok)],
        middleware=[Middleware(RateLimitMiddleware, limiter=limiter)],
    )
    app.add_route("/metrics", metrics_endpoint)
    with TestClient(app) as client:
        codes = [client.get("/limited").status_code for _ in range(5)]
        scraped = client.get("/metrics")
        again = client.get("/metrics")
    assert codes == [200, 200, 200, 429, 429]

    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "ratelimit" not in scraped.headers  # /metrics is not under the rule
    assert decisions(scraped.text, rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
    # Scraping is not a decision: a second scrape reads the same counts.
    assert decisions(again.text, rule) == {
        ("/limited", "*", "allowed", "enforce"): 3.0,
        ("/limited", "*", "rejected", "enforce"): 2.0,
    }
