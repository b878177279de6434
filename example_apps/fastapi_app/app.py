"""A FastAPI app limited by ``example_apps/ratelimits.yaml`` and one ``RateLimit`` dependency.

Run from the repository root::

    uvicorn example_apps.fastapi_app.app:app

With ``RATEMW_REDIS_URL`` set the limits are global across workers; else per process.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.responses import StreamingResponse

from ratemw_starlette import RateLimit, RateLimitMiddleware, metrics_endpoint

RULES = Path(__file__).resolve().parent.parent / "ratelimits.yaml"
#: How long a checkout holds its concurrency slot (bounded: at most 5 s).
CHECKOUT_HOLD_SECONDS = max(0.0, min(float(os.environ.get("CHECKOUT_HOLD_SECONDS", "0.5")), 5.0))

app = FastAPI()
app.add_middleware(
    RateLimitMiddleware, rules=RULES, redis_url=os.environ.get("RATEMW_REDIS_URL") or None
)
app.add_route("/metrics", metrics_endpoint)  # Prometheus, every worker's counts


@app.post("/login")
async def login() -> dict[str, object]:
    return {"token": "demo", "pid": os.getpid()}


@app.get("/search/{q}")
async def search(q: str) -> dict[str, object]:
    return {"q": q, "results": []}


@app.post("/checkout")
async def checkout() -> StreamingResponse:
    # Streamed slowly: the "checkout" rule's concurrency slot is held until the last chunk.
    async def steps() -> AsyncIterator[bytes]:
        yield f"reserved {time.time():.6f}\n".encode()
        await asyncio.sleep(CHECKOUT_HOLD_SECONDS)
        yield f"done {time.time():.6f}\n".encode()

    return StreamingResponse(steps(), media_type="text/plain")


# A limit written in code, per route: 10 a minute per address, on top of the file's
# "reports" rule (per API key).
@app.get("/api/reports/{id}", dependencies=[Depends(RateLimit("10/minute", name="reports-anon"))])
async def report(id: int) -> dict[str, int]:
    return {"id": id}


@app.get("/health")
async def health() -> dict[str, object]:
    return {"ok": True, "pid": os.getpid()}
