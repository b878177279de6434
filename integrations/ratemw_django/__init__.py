"""ratemw for Django: ``MIDDLEWARE = [..., "ratemw_django.RateLimitMiddleware"]``.

Settings live in one ``RATEMW`` dict (see :mod:`ratemw_django.conf`); add
``"ratemw_django"`` to ``INSTALLED_APPS`` for the system checks. ``@ratelimit``
declares a rule on a view. Guide: ``docs/quickstart-django.md``.
"""

from __future__ import annotations

from ratemw_django.decorators import ratelimit
from ratemw_django.metrics import metrics_view
from ratemw_django.middleware import RateLimitMiddleware

__all__ = ["RateLimitMiddleware", "metrics_view", "ratelimit"]
