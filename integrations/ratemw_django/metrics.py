"""``/metrics`` for Django in one line: ``path("metrics", metrics_view)`` in ``urlpatterns``."""

from __future__ import annotations

from typing import Any

__all__ = ["metrics_view"]


def metrics_view(request: Any) -> Any:
    """Prometheus text of every limiter in this process (or, under gunicorn's
    multiprocess mode, of every worker); needs ``ratemw[prometheus]``."""
    from django.http import HttpResponse

    from ratemw.metrics import render

    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
