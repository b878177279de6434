"""A Starlette app limited by ``example_apps/ratelimits.yaml``.

Run from the repository root::

    uvicorn example_apps.starlette_app.app:app

With ``RATEMW_REDIS_URL`` set (e.g. ``redis://127.0.0.1:6379/0``) the limits are global
across workers (``uvicorn --workers 4``); without it they are per process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ratemw_starlette import RateLimitMiddleware, metrics_endpoint

RULES = Path(__file__).resolve().parent.parent / "ratelimits.yaml"
#: How long a checkout holds its concurrency slot (bounded: at most 5 s).
CHECKOUT_HOLD_SECONDS = max(0.0, min(float(os.environ.get("CHECKOUT_HOLD_SECONDS", "0.5")), 5.0))


async def login(request: Request) -> Response:
    return JSONResponse({"token": "demo", "pid": os.getpid()})


async def search(request: Request) -> Response:
    return JSONResponse({"q": request.path_params["q"], "results": []})


async def checkout(request: Request) -> Response:
    # Streamed slowly: the "checkout" rule's concurrency slot is held until the last chunk.
    # Each line carries the wall-clock time it was written (run_demo.py checks overlaps).
    async def steps() -> AsyncIterator[bytes]:
        yield f"reserved {time.time():.6f}\n".encode()
        await asyncio.sleep(CHECKOUT_HOLD_SECONDS)
        yield f"done {time.time():.6f}\n".encode()

    return StreamingResponse(steps(), media_type="text/plain")


async def report(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True, "pid": os.getpid()})


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/search/{q}", search),
        Route("/checkout", checkout, methods=["POST"]),
        Route("/api/reports/{id}", report, name="report"),
        Route("/health", health),
        Route("/metrics", metrics_endpoint),  # Prometheus, every worker's counts
    ],
    middleware=[
        Middleware(
            RateLimitMiddleware, rules=RULES, redis_url=os.environ.get("RATEMW_REDIS_URL") or None
        )
    ],
)
