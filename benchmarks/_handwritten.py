"""The floors of the adapters: the middleware a user would write by hand in ten lines.

Each keeps a token bucket per client address in a dict and sets one header, the
remaining tokens; a rejection is a bare 429. No rules, no metrics, no headers to escape,
no fail-open: what is left when everything ratemw adds is taken away.
``bench_frameworks.py`` and ``bench_instructions.py`` measure ratemw's adapters against
them (issue #11: ratemw's added cost <= 2 x theirs).
"""

from __future__ import annotations

import time
from typing import Any

# The hand-written middlewares a user would write in ten lines: a dict bucket per client
# address and one header. They are the floors of the adapters.


def handwritten_wsgi(app: Any, rate: float, burst: float) -> Any:
    buckets: dict[str, list[float]] = {}
    monotonic = time.monotonic

    def middleware(environ: dict[str, Any], start_response: Any) -> Any:
        key = environ.get("REMOTE_ADDR", "")
        now = monotonic()
        b = buckets.get(key)
        if b is None:
            b = buckets[key] = [burst, now]
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            start_response("429 Too Many Requests", [("Retry-After", "1")])
            return [b""]
        b[0] = tokens - 1.0
        header = ("RateLimit-Remaining", str(int(b[0])))

        def start(status: str, headers: list[Any], exc_info: Any = None) -> Any:
            return start_response(status, [*headers, header], exc_info)

        return app(environ, start)

    return middleware


def handwritten_asgi(app: Any, rate: float, burst: float) -> Any:
    buckets: dict[str, list[float]] = {}
    monotonic = time.monotonic

    async def middleware(scope: dict[str, Any], receive: Any, send: Any) -> Any:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        client = scope.get("client")
        key = client[0] if client else ""
        now = monotonic()
        b = buckets.get(key)
        if b is None:
            b = buckets[key] = [burst, now]
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            await send({"type": "http.response.start", "status": 429, "headers": []})
            return await send({"type": "http.response.body", "body": b""})
        b[0] = tokens - 1.0
        header = (b"ratelimit-remaining", str(int(b[0])).encode())

        async def send_with_header(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await app(scope, receive, send_with_header)

    return middleware


def handwritten_django(get_response: Any, rate: float = 1e9, burst: float = 1e9) -> Any:
    """A Django middleware function (``MIDDLEWARE = ["..."]`` takes the factory)."""
    from django.http import HttpResponse

    buckets: dict[str, list[float]] = {}
    monotonic = time.monotonic

    def middleware(request: Any) -> Any:
        key = request.META.get("REMOTE_ADDR", "")
        now = monotonic()
        b = buckets.get(key)
        if b is None:
            b = buckets[key] = [burst, now]
        tokens = min(burst, b[0] + (now - b[1]) * rate)
        b[1] = now
        if tokens < 1.0:
            b[0] = tokens
            return HttpResponse(status=429)
        b[0] = tokens - 1.0
        response = get_response(request)
        response["RateLimit-Remaining"] = str(int(b[0]))
        return response

    return middleware
