"""A limiter process for the console's tests: live rules from the file the control
service publishes, global limits and operations on the test's Redis, ``/metrics``.

Run with uvicorn; the environment names the rules file (``CONSOLE_RULES``), Redis
(``RATEMW_REDIS_URL``) and the operations app (``CONSOLE_OPS_APP``). ``/digest`` answers
the digest of the rules in force, so a test knows when a publication arrived.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ratemw import asgi
from ratemw.config import live_async_limiter
from ratemw.types import Receive, Scope, Send
from ratemw_starlette import metrics_endpoint

state: dict[str, Any] = {}


async def ok(request: Request) -> Response:
    return JSONResponse({"ok": True, "pid": os.getpid()})


async def digest(request: Request) -> Response:
    return JSONResponse({"digest": state["limiter"].snapshot.ruleset.digest, "pid": os.getpid()})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    # Built on the event loop: the live rules hand their swaps to it.
    limiter, live = live_async_limiter(
        os.environ["CONSOLE_RULES"],
        redis_url=os.environ["RATEMW_REDIS_URL"],
        operations={
            "interval_seconds": 0.2,
            "top_push_seconds": 0.4,
            "app": os.environ["CONSOLE_OPS_APP"],
        },
    )
    state["limiter"] = limiter
    state["limited"] = asgi.RateLimitMiddleware(inner, limiter=limiter)
    try:
        yield
    finally:
        live.close()
        await limiter.aclose()


inner = Starlette(
    routes=[
        Route("/login", ok, methods=["POST"]),
        Route("/search/{q}", ok),
        Route("/reports/{id}", ok),
        Route("/health", ok),
        Route("/digest", digest),
        Route("/metrics", metrics_endpoint),
    ],
    lifespan=lifespan,
)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "http" and scope["path"] not in ("/health", "/digest", "/metrics"):
        await state["limited"](scope, receive, send)
    else:
        await inner(scope, receive, send)
