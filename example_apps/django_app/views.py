from __future__ import annotations

import time
from collections.abc import Iterator

from django.http import HttpRequest, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from ratemw_django import ratelimit


@csrf_exempt
@require_POST
def login(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "logged in"})


@require_GET
def search(request: HttpRequest, q: str) -> JsonResponse:
    return JsonResponse({"query": q, "results": []})


@csrf_exempt
@require_POST
def checkout(request: HttpRequest) -> StreamingHttpResponse:
    # A streamed body holds its "checkout" concurrency slot until the last chunk is sent.
    def steps() -> Iterator[str]:
        for step in ("reserved\n", "charged\n", "done\n"):
            time.sleep(0.2)
            yield step

    return StreamingHttpResponse(steps(), content_type="text/plain")


@ratelimit("60/minute", identity="ip")  # on top of the file's "reports" rule
@require_GET
def report(request: HttpRequest, report_id: int) -> JsonResponse:
    return JsonResponse({"id": report_id})


@require_GET
def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})
