"""The one request every framework benchmark sends: a GET of ``PATH`` from ``PEER``, as
a WSGI environ (PEP 3333) and as an ASGI HTTP scope."""

from __future__ import annotations

import io
import sys
from typing import Any

PATH = "/api/items"
PEER = "198.51.100.7"


def wsgi_environ() -> dict[str, Any]:
    """A fresh environ (its ``wsgi.input`` is read at most once)."""
    return {
        "REQUEST_METHOD": "GET", "PATH_INFO": PATH, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": PEER, "HTTP_HOST": "testserver", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False,
    }  # fmt: skip


def asgi_scope() -> dict[str, Any]:
    """A fresh HTTP scope."""
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": PATH, "raw_path": PATH.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"testserver")],
        "client": (PEER, 50000), "server": ("testserver", 80),
    }  # fmt: skip
