"""A Starlette app limited by ``example_apps/ratelimits.yaml``.

Run from the repository root::

    uvicorn example_apps.starlette_app.app:app
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ratemw_starlette import RateLimitMiddleware

RULES = Path(__file__).resolve().parent.parent / "ratelimits.yaml"


async def login(request: Request) -> Response:
    return JSONResponse({"token": "demo"})


async def search(request: Request) -> Response:
    return JSONResponse({"q": request.path_params["q"], "results": []})


async def checkout(request: Request) -> Response:
    # Streamed slowly: the "checkout" rule's concurrency slot is held until the last chunk.
    async def steps() -> AsyncIterator[bytes]:
        for step in ("reserving", "charging", "done"):
            yield f"{step}\n".encode()
            await asyncio.sleep(0.5)

    return StreamingResponse(steps(), media_type="text/plain")


async def report(request: Request) -> Response:
    return JSONResponse({"id": request.path_params["id"]})


async def health(request: Request) -> Response:
    return JSONResponse({"ok": True})


app = Starlette(
    routes=[
        Route("/login", login, methods=["POST"]),
        Route("/search/{q}", search),
        Route("/checkout", checkout, methods=["POST"]),
        Route("/api/reports/{id}", report, name="report"),
        Route("/health", health),
    ],
    middleware=[Middleware(RateLimitMiddleware, rules=RULES)],
)
