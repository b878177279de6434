"""The WSGI app ``tests/replay/test_multiprocess.py`` runs under gunicorn (2 workers).

Imported in each worker (no ``--preload``): each has its own limiter, global through the
Redis at ``REPLAY_REDIS_URL``, recording to its own file (``{pid}`` in
``REPLAY_RECORD``). Every response names the worker in ``X-Worker-Pid``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ratemw import Limiter
from ratemw.ops.record import Recorder
from ratemw.wsgi import RateLimitMiddleware

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

limiter = Limiter(
    json.loads(os.environ["REPLAY_RULES"]),
    redis_url=os.environ["REPLAY_REDIS_URL"],
    hash_key=os.environ["REPLAY_HASH_KEY"],
    record=Recorder(
        os.environ["REPLAY_RECORD"],
        sample=float(os.environ["REPLAY_SAMPLE"]),
        by="api_key",
        max_bytes=int(os.environ["REPLAY_MAX_BYTES"]),
        keep=int(os.environ["REPLAY_KEEP"]),
        flush_seconds=0.1,
    ),
)


def _inner(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


_limited = RateLimitMiddleware(_inner, limiter=limiter)


def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    pid = ("X-Worker-Pid", str(os.getpid()))

    def tagged(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        return start_response(status, [*headers, pid], exc_info)

    return _limited(environ, tagged)
