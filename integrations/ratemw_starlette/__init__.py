"""ratemw for Starlette and FastAPI: ``app.add_middleware(RateLimitMiddleware, rules=...)``.

The core ASGI middleware plus what only Starlette knows: the signed-in user
(``scope["user"]``), route names for ``match: {route: NAME}``, a rejection hook
taking a ``Request``, and the :class:`RateLimit` dependency for FastAPI.
"""

from __future__ import annotations

from ratemw._deps import require

require("starlette", extra="starlette", purpose="ratemw_starlette")

from ratemw_starlette._depends import RateLimit  # noqa: E402
from ratemw_starlette._metrics import metrics_endpoint  # noqa: E402
from ratemw_starlette._middleware import RateLimitMiddleware, RejectHandler  # noqa: E402

__all__ = ["RateLimit", "RateLimitMiddleware", "RejectHandler", "metrics_endpoint"]
