"""The WSGI app ``tests/ops/test_gunicorn_multiprocess.py`` runs under gunicorn.

Imported in each worker (no ``--preload``), so each has its own limiter, with its own
in-memory buckets, whose operations loop pushes its counters to the multiprocess files.
Every response, a 429 included, names the worker in ``X-Worker-Pid``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ratemw import Limiter
from ratemw.metrics import wsgi_app
from ratemw.wsgi import RateLimitMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

HIT_LIMIT = "100000/minute"
RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "hit", "match": {"path": "/hit"}, "limit": HIT_LIMIT},
        {"name": "tight", "match": {"path": "/tight"}, "limit": "1/hour"},
    ],
}

limiter = Limiter(RULES, operations={"interval_seconds": 0.1})
metrics = wsgi_app()  # multiprocess mode: the sum of every worker's files


def _inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    if environ.get("PATH_INFO") == "/metrics":
        return metrics(environ, start_response)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(os.getpid()).encode()]


_limited = RateLimitMiddleware(_inner, limiter=limiter)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    pid = ("X-Worker-Pid", str(os.getpid()))

    def tagged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, pid], exc_info)

    return _limited(environ, tagged)
