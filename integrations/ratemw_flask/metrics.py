"""``/metrics`` for Flask in one line: ``app.add_url_rule("/metrics", view_func=metrics_view)``."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Response

__all__ = ["metrics_view"]


def metrics_view() -> Response:
    """Prometheus text of every limiter in this process (or, under gunicorn's
    multiprocess mode, of every worker); needs ``ratemw[prometheus]``."""
    from flask import Response

    from ratemw.metrics import render

    body, content_type = render()
    return Response(body, content_type=content_type)
