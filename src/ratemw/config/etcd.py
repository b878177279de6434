"""``EtcdSource``: rules from an etcd v3 key, read with ``range`` and followed with ``watch``."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import threading
import time
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ratemw._deps import require
from ratemw.config._etcd_wire import (
    MAX_KEY_BYTES,
    WatchMessage,
    answer_limit,
    b64,
    credential,
    error_text,
    header_value,
    lines,
    options_from_url,
    parse_range,
    parse_watch,
    read_bounded,
    tls_context,
)
from ratemw.config.base import SourceDocument, SourceUnavailable, backoff, key_format, log
from ratemw.redact import scrub
from ratemw.rules._source import ParseLimits

if TYPE_CHECKING:
    import httpx

_SMALL_ANSWER = 64 * 1024  # put, authenticate, errors


class EtcdSource:
    """An etcd key, through etcd's v3 JSON gateway (etcd 3.4+, ``/v3/…``).

    ``read`` is a ``range`` on the key; ``watch`` reads, then watches from the revision
    read + 1, and reads again when etcd has compacted that revision away, when the
    stream breaks (an etcd restart; backing off from ``backoff_seconds`` doubling to
    30 s, jittered) and when it has been quiet for ``check_interval_seconds`` (a peer
    gone without a word). ``user`` and ``password`` are exchanged for a token
    (``/v3/auth/authenticate``); ``token`` is used as given. ``scheme="https"`` with
    ``verify`` (``True``, ``False`` or a CA bundle path), ``cert`` and ``cert_key``.
    Needs httpx (extra ``etcd``).
    """

    def __init__(
        self,
        address: str,
        key: bytes | str,
        *,
        scheme: str = "http",
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        verify: bool | str = True,
        cert: str | None = None,
        cert_key: str | None = None,
        check_interval_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 0.5,
        min_interval_seconds: float = 0.05,
        fmt: str | None = None,
    ) -> None:
        self._httpx = require("httpx", extra="etcd", purpose="EtcdSource")
        self.key = key.encode() if isinstance(key, str) else bytes(key)
        if not self.key or len(self.key) > MAX_KEY_BYTES:
            raise ValueError(f"an etcd key is 1 to {MAX_KEY_BYTES} bytes")
        if (user is None) != (password is None):
            raise ValueError("an etcd user needs a password (or use a token)")
        if not 0.1 <= check_interval_seconds <= 86400:
            raise ValueError("check_interval_seconds must be within 0.1 s and one day")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme is http or https, not {scheme[:10]!r}")
        self._user = credential(user, "user") if user is not None else None
        self._password = credential(password, "password") if password is not None else None
        self._token = header_value(token, "token") if token else None
        self.origin = f"{'etcds' if scheme == 'https' else 'etcd'}://{address}/{quote(self.key)}"
        self.fmt = key_format(self.key.decode("utf-8", "replace"), fmt)
        self.check_interval_seconds = check_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.min_interval_seconds = min_interval_seconds
        # As URLs, so scrub() masks them wherever a client error might echo one.
        self._secret_url = (f"etcd://{quote(self._user or 'u', safe='')}:"
                            f"{quote(self._password or '', safe='')}@h/?token="
                            f"{quote(self._token or '', safe='')}")  # fmt: skip
        self._issued_url = ""  # the token etcd issued for user and password, likewise
        self._client: httpx.Client = self._httpx.Client(
            base_url=f"{scheme}://{address}",
            verify=tls_context(verify, cert, cert_key),
            timeout=timeout_seconds,
            trust_env=False,
        )
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._stream_socket: socket.socket | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> EtcdSource:
        """``etcd://[user:password@]host:2379/<key>?token=…&format=yaml&check_interval=30s``;
        ``etcds://`` for TLS (``ca=/path/ca.pem``, ``cert=…``, ``cert_key=…``, ``insecure=1``)."""
        address, key, kwargs = options_from_url(url)
        return cls(address, key, **{**kwargs, **options})

    # -- requests -------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        if self._token is None and self._password is not None:
            self._token = self._authenticate()
        return {"Authorization": self._token} if self._token else {}

    def _authenticate(self) -> str:
        body = {"name": self._user, "password": self._password}
        status, answer, _ = self._post("/v3/auth/authenticate", body, _SMALL_ANSWER, auth=False)
        if status != 200:
            raise SourceUnavailable(
                f"{self.origin}: authenticating as {self._user!r}: HTTP {status}: "
                f"{error_text(answer)}"
            )
        try:
            token = header_value(json.loads(answer)["token"], "token")
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"{self.origin}: unexpected authenticate answer") from exc
        self._issued_url = f"etcd://h/?token={quote(token, safe='')}"
        return token

    def _post(
        self, path: str, body: dict[str, Any], limit: int, *, auth: bool = True
    ) -> tuple[int, bytes, bool]:
        """One POST, its answer read up to ``limit``: ``(status, answer, cut short)``."""
        retry = auth and self._password is not None
        while True:
            headers = self._auth() if auth else {}
            try:
                with self._client.stream("POST", path, json=body, headers=headers) as response:
                    status = response.status_code
                    answer, cut = read_bounded(response.iter_bytes(), limit)
            except Exception as exc:  # httpx.HTTPError, or the client closed under us
                raise SourceUnavailable(self._failed(exc)) from exc
            if status != 401 or not retry:
                return status, answer, cut
            retry = False
            self._token = None  # expired (etcd's simple tokens idle out): once more

    def _limit(self) -> int:
        return answer_limit(ParseLimits.from_env().max_bytes, self.key)

    def _range(self) -> tuple[int, SourceDocument | None]:
        status, answer, cut = self._post("/v3/kv/range", {"key": b64(self.key)}, self._limit())
        if status != 200:
            raise SourceUnavailable(f"{self.origin}: range: HTTP {status}: {error_text(answer)}")
        try:
            revision, value = parse_range(answer, cut, ParseLimits.from_env().max_bytes + 1)
        except (ValueError, KeyError, TypeError) as exc:
            raise SourceUnavailable(f"{self.origin}: unexpected range answer: {exc}") from exc
        doc = SourceDocument(value, self.origin, self.fmt) if value is not None else None
        return revision, doc

    def read(self) -> SourceDocument | None:
        return self._range()[1]

    def put(self, data: bytes) -> None:
        """Write ``data`` to the key (``/v3/kv/put``); raises :class:`SourceUnavailable`."""
        body = {"key": b64(self.key), "value": b64(data)}
        status, answer, _ = self._post("/v3/kv/put", body, _SMALL_ANSWER)
        if status != 200:
            raise SourceUnavailable(f"{self.origin}: put: HTTP {status}: {error_text(answer)}")

    # -- watching -------------------------------------------------------------------

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        failures = 0
        last_digest = ""
        missing_logged = False
        while not (stop.is_set() or self._closed.is_set()):
            started = time.monotonic()
            try:
                revision, first = self._range()
                events = self._follow(revision + 1)
                try:
                    for message in itertools.chain([first], events):
                        if isinstance(message, WatchMessage):
                            failures = 0  # the watch is set: a loss later starts afresh
                            continue
                        if message is None:
                            if not missing_logged:
                                log.warning("ratemw: %s: no such key; the last rules stay live",
                                            self.origin)  # fmt: skip
                            missing_logged = True
                            continue
                        missing_logged = False
                        if message.digest != last_digest:
                            last_digest = message.digest
                            yield message
                finally:
                    events.close()  # the stream, now rather than when collected
            except SourceUnavailable as exc:
                if stop.is_set() or self._closed.is_set():
                    return
                failures += 1
                delay = backoff(failures, self.backoff_seconds)
                log.warning("ratemw: %s; retrying in %.1fs", exc, delay)
                stop.wait(delay)
                continue
            # A re-read is due (compaction, a quiet stream): never a hot loop, though.
            elapsed = time.monotonic() - started
            if elapsed < self.min_interval_seconds:
                stop.wait(self.min_interval_seconds - elapsed)

    def _follow(self, start: int) -> Generator[SourceDocument | WatchMessage | None, None, None]:
        """Watch from revision ``start``: a :class:`WatchMessage` once created, then each
        document (``None``: deleted). Returns when the key should be read again; raises
        :class:`SourceUnavailable` when the watch fails."""
        body = {"create_request": {"key": b64(self.key), "start_revision": str(start)}}
        timeout = self._httpx.Timeout(self.timeout_seconds, read=self.check_interval_seconds)
        try:
            with self._client.stream(
                "POST", "/v3/watch", json=body, headers=self._auth(), timeout=timeout
            ) as response:
                self._hold(response)
                if response.status_code != 200:
                    answer, _ = read_bounded(response.iter_bytes(), _SMALL_ANSWER)
                    raise SourceUnavailable(
                        f"{self.origin}: watch: HTTP {response.status_code}: {error_text(answer)}"
                    )
                for line, cut in lines(response.iter_bytes(), self._limit()):
                    if cut:
                        return  # more than a document's worth: read the key instead
                    message = parse_watch(line)
                    if message.compacted:
                        log.info("ratemw: %s: revision %d compacted; reading the key again",
                                 self.origin, start)  # fmt: skip
                        return
                    if message.canceled is not None:
                        if "auth token" in message.canceled:
                            self._token = None  # expired: authenticate again
                        raise SourceUnavailable(f"{self.origin}: watch: {message.canceled}")
                    if message.created:
                        yield message
                    elif message.deleted:
                        yield None
                    elif message.value is not None:
                        yield SourceDocument(message.value, self.origin, self.fmt)
        except SourceUnavailable:
            raise
        except Exception as exc:  # httpx.HTTPError, a bad message, close() waking the read
            if self._closed.is_set() or isinstance(exc, self._httpx.ReadTimeout):
                return  # closed; or quiet for check_interval: read again (proves etcd is up)
            if isinstance(exc, (ValueError, KeyError, TypeError)):
                raise SourceUnavailable(f"{self.origin}: unexpected watch answer: {exc}") from exc
            raise SourceUnavailable(self._failed(exc)) from exc
        finally:
            self._hold(None)
        if not self._closed.is_set():
            raise SourceUnavailable(f"{self.origin}: the watch stream ended")

    def _hold(self, response: httpx.Response | None) -> None:
        # The socket of the watch stream, so close() can wake a read blocked on it.
        stream = response.extensions.get("network_stream") if response is not None else None
        sock: socket.socket | None = stream.get_extra_info("socket") if stream else None
        with self._lock:
            self._stream_socket = sock
        if sock is not None and self._closed.is_set():
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            sock = self._stream_socket
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                sock.shutdown(socket.SHUT_RDWR)

    def _failed(self, exc: Exception) -> str:
        secrets = (self._secret_url, self._issued_url)
        return scrub(f"{self.origin}: {type(exc).__name__}: {exc}", secrets)

    def close(self) -> None:
        self._closed.set()
        self._wake()
        self._client.close()

    def __repr__(self) -> str:
        return f"EtcdSource({self.origin!r})"
