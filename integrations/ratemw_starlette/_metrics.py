"""``/metrics`` for Starlette and FastAPI in one line: ``app.add_route("/metrics",
metrics_endpoint)``."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["metrics_endpoint"]


async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text of every limiter in this process (or, under gunicorn's
    multiprocess mode, of every worker); needs ``ratemw[prometheus]``."""
    from ratemw.metrics import render

    body, content_type = render()
    return Response(body, media_type=content_type)
