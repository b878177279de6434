from __future__ import annotations

import os
import time
from collections.abc import Iterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ratemw_django import ratelimit

#: How long a checkout holds its concurrency slot (bounded: at most 5 s).
CHECKOUT_HOLD_SECONDS = max(0.0, min(float(os.environ.get("CHECKOUT_HOLD_SECONDS", "0.5")), 5.0))


@csrf_exempt
@require_POST
def login(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "logged in", "pid": os.getpid()})


@require_GET
def search(request: HttpRequest, q: str) -> JsonResponse:
    return JsonResponse({"query": q, "results": []})


@csrf_exempt
@require_POST
def checkout(request: HttpRequest) -> StreamingHttpResponse:
    # A streamed body holds its "checkout" concurrency slot until the last chunk is sent.
    def steps() -> Iterator[str]:
        yield f"reserved {time.time():.6f}\n"
        time.sleep(CHECKOUT_HOLD_SECONDS)
        yield f"done {time.time():.6f}\n"

    return StreamingHttpResponse(steps(), content_type="text/plain")


@ratelimit("60/minute", identity="ip")  # on top of the file's "reports" rule
@require_GET
def report(request: HttpRequest, report_id: int) -> JsonResponse:
    return JsonResponse({"id": report_id})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "pid": os.getpid()})
