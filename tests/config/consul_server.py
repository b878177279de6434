"""A local HTTP server following Consul's documented KV and blocking-query API.

Consul cannot be installed here; this double implements what ``ConsulSource`` and
``publish`` use, as the Consul docs describe it:

* ``GET /v1/kv/<key>``: ``[{"Key", "Value" (base64), "Flags", "LockIndex",
  "CreateIndex", "ModifyIndex"}]`` or 404; ``?raw`` gives the bare value; every answer
  carries ``X-Consul-Index``.
* Blocking queries: ``?index=N&wait=D`` holds the request until the key's index
  passes ``N`` or ``D`` (Go duration, default 5 m, at most 10 m) runs out, plus up
  to ``D/16`` of jitter.
* ``PUT /v1/kv/<key>`` stores the body and answers ``true``; ``DELETE`` removes it.
* ACLs: with ``token`` set, a request without a matching ``X-Consul-Token``
  header (or ``?token=``) gets 403 "Permission denied".

Switches for tests: ``fail_with(status)`` answers every KV read with that status
until ``fail_with(None)``; ``reset_index(to)`` moves the raft index back (as a
snapshot restore does) and wakes blocked queries, as Consul's abandon channel does.
"""

from __future__ import annotations

import base64
import json
import random
import re
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["ConsulServer", "Request"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MAX_WAIT = 600.0


def parse_go_duration(text: str) -> float:
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    return sum(float(n) * _UNITS[u] for n, u in parts)


@dataclass
class _Entry:
    value: bytes
    create_index: int
    modify_index: int
    flags: int = 0


@dataclass
class Request:
    """One request as it arrived (``at``); ``status`` is 0 until it is answered."""

    method: str
    path: str
    query: dict[str, str]
    token: str | None
    at: float
    status: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client hanging up on a blocked query is normal


class ConsulServer:
    """The double, on ``127.0.0.1`` and an ephemeral port; ``with ConsulServer() as c``."""

    def __init__(self, token: str | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.token = token
        self._cond = threading.Condition()
        self._kv: dict[str, _Entry] = {}
        self._index = 1
        self._failure: int | None = None
        self._epoch = 0  # bumped by reset_index: wakes blocked queries
        self.requests: list[Request] = []
        self.blocked = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_PUT(self) -> None:
                server._handle(self, "PUT")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self.port = self._httpd.server_address[1]
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # -- lifetime -------------------------------------------------------------------

    def __enter__(self) -> ConsulServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    # -- switches and direct access -----------------------------------------------

    def put(self, key: str, value: bytes) -> int:
        """Write as a PUT would; returns the new index."""
        with self._cond:
            self._index += 1
            old = self._kv.get(key)
            create = old.create_index if old is not None else self._index
            self._kv[key] = _Entry(value, create, self._index)
            self._cond.notify_all()
            return self._index

    def delete(self, key: str) -> int:
        with self._cond:
            self._index += 1
            self._kv.pop(key, None)
            self._cond.notify_all()
            return self._index

    def get(self, key: str) -> bytes | None:
        with self._cond:
            entry = self._kv.get(key)
            return entry.value if entry is not None else None

    def fail_with(self, status: int | None) -> None:
        """Answer every KV read with ``status`` (a 5xx), or stop when ``None``."""
        with self._cond:
            self._failure = status
            self._cond.notify_all()

    def reset_index(self, to: int = 1) -> None:
        """Move every index back to at most ``to`` (a snapshot restore)."""
        with self._cond:
            self._index = to
            for entry in self._kv.values():
                entry.create_index = min(entry.create_index, to)
                entry.modify_index = min(entry.modify_index, to)
            self._epoch += 1
            self._cond.notify_all()

    @property
    def index(self) -> int:
        with self._cond:
            return self._index

    def wait_for(self, predicate: Any, timeout: float) -> bool:
        """Wait (on the server's condition) until ``predicate(server)`` holds."""
        with self._cond:
            return bool(self._cond.wait_for(lambda: predicate(self), timeout))

    # -- the API ------------------------------------------------------------------

    def _failing(self) -> int | None:
        return self._failure

    def _key_index(self, key: str) -> int:
        entry = self._kv.get(key)
        # Consul answers a key with its ModifyIndex, a missing key with the table index.
        return entry.modify_index if entry is not None else self._index

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        token = handler.headers.get("X-Consul-Token") or query.get("token")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        request = Request(method, parts.path, query, token, time.time())
        with self._cond:
            self.requests.append(request)
        status, headers, payload = self._answer(method, parts.path, query, token, body)
        with self._cond:
            request.status = status
            self._cond.notify_all()
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _answer(
        self, method: str, path: str, query: dict[str, str], token: str | None, body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if not path.startswith("/v1/kv/"):
            return 404, {}, b"not found"
        key = unquote(path[len("/v1/kv/") :])
        if self.token is not None and token != self.token:
            return 403, {}, b"Permission denied"
        if method == "PUT":
            self.put(key, body)
            return 200, {"Content-Type": "application/json"}, b"true"
        if method == "DELETE":
            self.delete(key)
            return 200, {"Content-Type": "application/json"}, b"true"
        with self._cond:
            if self._failure is not None:
                return self._failure, {}, b"rpc error: No cluster leader"
            wanted = int(query.get("index") or 0)
            if wanted > 0:
                wait = min(parse_go_duration(query.get("wait") or "5m"), _MAX_WAIT)
                wait += random.uniform(0, wait / 16)
                epoch = self._epoch
                self.blocked += 1
                self._cond.notify_all()
                try:
                    self._cond.wait_for(
                        lambda: (
                            self._key_index(key) > wanted
                            or self._epoch != epoch
                            or self._failure is not None
                        ),
                        wait,
                    )
                finally:
                    self.blocked -= 1
                failure = self._failing()  # switched on while the query was held
                if failure is not None:
                    return failure, {}, b"rpc error: No cluster leader"
            index = self._key_index(key)
            entry = self._kv.get(key)
            headers = {"X-Consul-Index": str(index), "X-Consul-Knownleader": "true"}
            if entry is None:
                return 404, headers, b""
            if "raw" in query:
                return 200, headers, entry.value
            item = {
                "LockIndex": 0,
                "Key": key,
                "Flags": entry.flags,
                "Value": base64.b64encode(entry.value).decode() if entry.value else None,
                "CreateIndex": entry.create_index,
                "ModifyIndex": entry.modify_index,
            }
            headers["Content-Type"] = "application/json"
            return 200, headers, json.dumps([item]).encode()
