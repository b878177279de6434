"""Shared pieces of the "Redis is down" adapter tests: no request may turn into a 500."""

from __future__ import annotations

import socket
from typing import Any


def dead_redis_url() -> str:
    """A loopback port nobody listens on: every connection is refused at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "local", "match": {"path": "/local"}, "limit": "3/minute"},
        {"name": "closed", "match": {"path": "/closed"}, "limit": "3/minute",
         "on_store_error": "closed"},
        {"name": "slots", "match": {"path": "/slots"}, "concurrency": 1},
    ],
}  # fmt: skip

#: path -> statuses expected for 5 requests: the local share (burst 3 with one process),
#: 503 for "closed", and the per-process concurrency share.
EXPECTED = {
    "/local": [200, 200, 200, 429, 429],
    "/closed": [503] * 5,
    "/slots": [200] * 5,
}
