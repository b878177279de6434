"""``ConsulSource``: rules from a Consul KV key, followed with blocking queries."""

from __future__ import annotations

import base64
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urlsplit

from ratemw._deps import require
from ratemw.config.base import SourceDocument, SourceUnavailable, backoff, key_format, log
from ratemw.redact import redact, scrub
from ratemw.rules.notation import parse_duration

if TYPE_CHECKING:
    import httpx


def _duration_param(seconds: float) -> str:
    # Go duration syntax, as Consul parses ``wait``.
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


class ConsulSource:
    """A Consul KV key, watched with blocking queries (``index`` + ``wait``).

    ``address`` is ``host:port``; ``scheme`` ``"http"`` or ``"https"`` (then
    ``verify`` is ``True``, ``False`` or a CA bundle path, ``cert`` a PEM file
    holding the client certificate and its key). ``token`` (default: env
    ``CONSUL_HTTP_TOKEN``) goes in the ``X-Consul-Token`` header. ``wait_seconds``
    bounds each blocking query; errors back off from ``backoff_seconds`` doubling to
    30 s. Needs httpx (extras ``control`` or ``all``).
    """

    def __init__(
        self,
        address: str,
        key: str,
        *,
        scheme: str = "http",
        token: str | None = None,
        datacenter: str | None = None,
        verify: bool | str = True,
        cert: str | None = None,
        wait_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 0.5,
        min_interval_seconds: float = 0.05,
        fmt: str | None = None,
    ) -> None:
        httpx_module = require("httpx", extra="consul", purpose="ConsulSource")
        self.key = key.strip("/")
        self.origin = f"{'consuls' if scheme == 'https' else 'consul'}://{address}/{self.key}"
        self.fmt = key_format(self.key, fmt)
        self.wait_seconds = wait_seconds
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.min_interval_seconds = min_interval_seconds
        token = token if token is not None else os.environ.get("CONSUL_HTTP_TOKEN") or None
        headers = {"X-Consul-Token": token} if token else {}
        # The token as a URL parameter, so scrub() masks it in client errors.
        self._secret_urls = (f"consul://?token={quote(token, safe='')}",) if token else ()
        self._params = {"dc": datacenter} if datacenter else {}
        self._path = f"/v1/kv/{quote(self.key)}"
        tls: ssl.SSLContext | bool = verify if isinstance(verify, bool) else True
        if isinstance(verify, str) or cert:
            tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if verify is False:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
            if cert:
                tls.load_cert_chain(cert)
        self._client: httpx.Client = httpx_module.Client(
            base_url=f"{scheme}://{address}",
            headers=headers,
            verify=tls,
            timeout=timeout_seconds,
            trust_env=False,
        )
        self._closed = threading.Event()
        self._closed_or_done = threading.Event()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ConsulSource:
        """``consul://host:8500/ratemw/rules?token=…&wait=30s&dc=…&format=yaml``;
        ``consuls://`` for TLS (``ca=/path/ca.pem``, ``cert=…``, ``insecure=1``)."""
        parts = urlsplit(url)
        if parts.scheme not in ("consul", "consuls") or not parts.hostname:
            raise ValueError(f"not a consul:// URL: {redact(url)!r}")
        query = dict(parse_qsl(parts.query))
        key = parts.path.strip("/")
        if not key:
            raise ValueError(f"{redact(url)!r} names no key: consul://host:8500/<key>")
        port = parts.port or 8500
        kwargs: dict[str, Any] = {"scheme": "https" if parts.scheme == "consuls" else "http"}
        if "token" in query:
            kwargs["token"] = query["token"]
        if "dc" in query:
            kwargs["datacenter"] = query["dc"]
        if "wait" in query:
            kwargs["wait_seconds"] = parse_duration(query["wait"])
        if "format" in query:
            kwargs["fmt"] = query["format"]
        if "ca" in query or os.environ.get("CONSUL_CACERT"):
            kwargs["verify"] = query.get("ca") or os.environ["CONSUL_CACERT"]
        if query.get("insecure") in ("1", "true", "yes"):
            kwargs["verify"] = False
        if "cert" in query:
            kwargs["cert"] = query["cert"]
        return cls(f"{parts.hostname}:{port}", key, **{**kwargs, **options})

    def _get(self, index: int) -> tuple[int, int, SourceDocument | None]:
        """One (blocking, when ``index``) query: ``(status, X-Consul-Index, document)``."""
        params = dict(self._params)
        timeout = self.timeout_seconds
        if index > 0:
            params.update(index=str(index), wait=_duration_param(self.wait_seconds))
            # Consul adds up to wait/16 of jitter to the wait.
            timeout += self.wait_seconds * 17 / 16
        try:
            response = self._client.get(self._path, params=params, timeout=timeout)
        except Exception as exc:  # httpx.HTTPError, or the client closed under us
            raise SourceUnavailable(self._failed(exc)) from exc
        try:
            new_index = int(response.headers.get("X-Consul-Index", "0"))
        except ValueError:
            new_index = 0
        if response.status_code != 200:
            return response.status_code, new_index, None
        try:
            entries = json.loads(response.content)
            entry = next(e for e in entries if e.get("Key", self.key) == self.key)
            raw = entry.get("Value")
            data = base64.b64decode(raw) if raw else b""
        except (ValueError, TypeError, StopIteration, AttributeError) as exc:
            raise SourceUnavailable(f"{self.origin}: unexpected KV answer: {exc}") from exc
        return 200, new_index, SourceDocument(data, self.origin, self.fmt)

    def read(self) -> SourceDocument | None:
        status, _, doc = self._get(0)
        if status == 404:
            return None
        if status != 200:
            raise SourceUnavailable(f"{self.origin}: HTTP {status}")
        return doc

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        index = 0
        failures = 0
        last_digest = ""
        missing_logged = False
        while not (stop.is_set() or self._closed.is_set()):
            started = time.monotonic()
            try:
                answer = self._interruptible_get(index)
                if answer is None:  # closed while the query was blocked
                    return
                status, new_index, doc = answer
            except SourceUnavailable as exc:
                status, new_index, doc = 0, index, None
                reason = str(exc)
            else:
                reason = f"{self.origin}: HTTP {status}"
            if status not in (200, 404):  # 5xx, 403 (ACL), connection errors
                if stop.is_set() or self._closed.is_set():
                    return
                failures += 1
                delay = backoff(failures, self.backoff_seconds)
                log.warning("ratemw: %s; retrying in %.1fs", reason, delay)
                stop.wait(delay)
                continue
            failures = 0
            # Consul's blocking-query rules: reset when the index goes backwards (a
            # snapshot restore, a new cluster), and never block on an index of 0.
            if new_index < index:
                log.info("ratemw: %s index went back (%d < %d): reset", self.origin,
                         new_index, index)  # fmt: skip
                index = 0
            else:
                index = max(new_index, 0)
            if doc is not None:
                missing_logged = False
                if doc.digest != last_digest:
                    last_digest = doc.digest
                    yield doc
            elif not missing_logged:
                missing_logged = True
                log.warning("ratemw: %s: no such key; the last rules stay live", self.origin)
            # Rate-limit the loop: a query may return at once without any change.
            elapsed = time.monotonic() - started
            if elapsed < self.min_interval_seconds:
                stop.wait(self.min_interval_seconds - elapsed)

    def _interruptible_get(self, index: int) -> tuple[int, int, SourceDocument | None] | None:
        # A blocking query may hold for ``wait_seconds``; a socket read cannot be woken
        # from another thread, so the query runs in a helper thread and close() stops
        # the wait for it (the helper ends with the query, at most ``wait`` later).
        box: list[Any] = []

        def query() -> None:
            try:
                box.append(self._get(index))
            except BaseException as exc:  # handed to the watcher, raised there
                box.append(exc)
            finally:
                self._closed_or_done.set()

        self._closed_or_done.clear()
        if self._closed.is_set():
            return None
        threading.Thread(target=query, name="ratemw-consul-query", daemon=True).start()
        self._closed_or_done.wait()
        if not box:
            return None
        if isinstance(box[0], BaseException):
            raise box[0]
        answer: tuple[int, int, SourceDocument | None] = box[0]
        return answer

    def put(self, data: bytes) -> None:
        """Write ``data`` to the key (``PUT /v1/kv/<key>``); raises SourceUnavailable."""
        try:
            response = self._client.put(self._path, params=self._params, content=data)
        except Exception as exc:
            raise SourceUnavailable(self._failed(exc)) from exc
        if response.status_code != 200 or response.text.strip() != "true":
            raise SourceUnavailable(f"{self.origin}: PUT answered HTTP {response.status_code}")

    def _failed(self, exc: Exception) -> str:
        return scrub(f"{self.origin}: {type(exc).__name__}: {exc}", self._secret_urls)

    def close(self) -> None:
        self._closed.set()
        self._closed_or_done.set()
        self._client.close()

    def __repr__(self) -> str:
        return f"ConsulSource({self.origin!r})"


# -- Redis ---------------------------------------------------------------------------
