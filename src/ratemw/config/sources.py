"""Where live rules come from: a file, a Consul KV key, or a Redis key plus a channel.

A source only moves bytes. ``read()`` returns the current document (``None`` when
there is none); ``watch(stop)`` yields a :class:`SourceDocument` each time the bytes
change (starting with the current ones) until ``stop`` is set. Parsing, validation
and the swap belong to :mod:`ratemw.config.loader` and :mod:`ratemw.config.holder`.
Optional clients (watchdog, httpx, redis) are imported in constructors.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ratemw._deps import require
from ratemw.errors import MissingDependency, RatemwError
from ratemw.rules._source import format_for
from ratemw.rules.notation import parse_duration

if TYPE_CHECKING:
    import httpx
    import redis

__all__ = [
    "ConsulSource",
    "FileSource",
    "RedisSource",
    "Source",
    "SourceDocument",
    "SourceUnavailable",
]

log = logging.getLogger("ratemw.config")

_MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class SourceDocument:
    """One version of a rules document: its bytes, where they came from, and the format
    (``"yaml"``, ``"toml"``, ``"json"``, or ``None`` to infer it from origin and bytes)."""

    data: bytes
    origin: str
    fmt: str | None = None

    @property
    def digest(self) -> str:
        """sha256 of the bytes (not the rules version, which ignores formatting)."""
        return hashlib.sha256(self.data).hexdigest()


class SourceUnavailable(RatemwError):
    """A source could not be read (file unreadable, Consul or Redis unreachable)."""


class Source(Protocol):
    """What :class:`ratemw.config.LiveRules` watches."""

    origin: str

    def read(self) -> SourceDocument | None:
        """The current document, ``None`` if absent; raises :class:`SourceUnavailable`."""

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        """Yield the current document, then each changed one, until ``stop`` is set."""

    def close(self) -> None:
        """Release connections and wake a blocked ``watch``. Idempotent."""


def _backoff(failures: int, base: float) -> float:
    # Exponential with "equal jitter": half fixed, half random, capped.
    delay = min(_MAX_BACKOFF_SECONDS, base * 2.0 ** max(0, failures - 1))
    return delay / 2 + random.uniform(0, delay / 2)


def _key_format(key: str, explicit: str | None) -> str | None:
    # A key named like a file (``ratemw/rules.toml``) says its format; else the loader
    # looks at the bytes.
    return explicit or format_for(key, "") or None


# -- files ---------------------------------------------------------------------------


_QUIET_EVENTS = ("opened", "closed_no_write")


class _DirectoryWatches:
    """One watchdog observer per process, one watch per directory, many listeners.

    Watching the directory rather than the file is what survives an editor's
    rename-over and a Kubernetes ConfigMap's ``..data`` symlink swap: the file's
    inode changes, the directory's does not.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._observer: Any = None
        self._watches: dict[str, tuple[Any, set[threading.Event]]] = {}

    def dispatch(self, event: object) -> None:  # called by watchdog's thread
        if getattr(event, "event_type", "") in _QUIET_EVENTS:
            return  # our own reads open and close the file: not a change
        paths = (getattr(event, "src_path", ""), getattr(event, "dest_path", ""))
        dirs = {os.path.dirname(os.fsdecode(p)) for p in paths if p}
        with self._lock:
            listeners = [e for d, (_, es) in self._watches.items() if d in dirs for e in es]
            if not listeners:  # an event about a watched directory itself
                listeners = [e for _, es in self._watches.values() for e in es]
        for wake in listeners:
            wake.set()

    def add(self, directory: str, wake: threading.Event) -> None:
        """Raises ``OSError`` (e.g. the inotify limit) or ``MissingDependency``."""
        with self._lock:
            if self._observer is None:
                observers = require("watchdog.observers", extra="watch", purpose="FileSource")
                observer = observers.Observer()
                observer.daemon = True
                observer.start()
                self._observer = observer
            entry = self._watches.get(directory)
            if entry is None:
                watch = self._observer.schedule(self, directory, recursive=False)
                entry = self._watches[directory] = (watch, set())
            entry[1].add(wake)

    def remove(self, directory: str, wake: threading.Event) -> None:
        with self._lock:
            entry = self._watches.get(directory)
            if entry is None:
                return
            entry[1].discard(wake)
            if not entry[1]:
                del self._watches[directory]
                with contextlib.suppress(KeyError, OSError):  # the directory is gone
                    self._observer.unschedule(entry[0])


_directories = _DirectoryWatches()


class FileSource:
    """A rules file, watched with watchdog (extra ``watch``) or by polling ``os.stat``.

    ``mode`` is ``"auto"`` (watchdog when installed and a watch can be set, else
    polling), ``"watchdog"`` (raise if unavailable) or ``"poll"``. Polling runs in
    every mode, every ``poll_interval_seconds``, as a backstop for missed events. A
    change is read once no further event came for ``settle_seconds`` (an editor's
    write may take several system calls).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: str = "auto",
        poll_interval_seconds: float = 1.0,
        settle_seconds: float = 0.05,
    ) -> None:
        if mode not in ("auto", "watchdog", "poll"):
            raise ValueError(f"mode must be 'auto', 'watchdog' or 'poll', got {mode!r}")
        self.path = Path(path)
        self.origin = os.fspath(self.path)
        self.mode = mode
        self.poll_interval_seconds = poll_interval_seconds
        self.settle_seconds = settle_seconds
        self.fmt = format_for(self.origin)
        self._wakes: set[threading.Event] = set()
        if mode == "watchdog":
            require("watchdog", extra="watch", purpose="FileSource")

    def read(self) -> SourceDocument | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SourceUnavailable(f"{self.origin}: {exc.strerror or exc}") from exc
        return SourceDocument(data, self.origin, self.fmt)

    def _signature(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)  # follows symlinks: a swapped link changes the inode
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _subscribe(self, wake: threading.Event) -> str | None:
        if self.mode == "poll":
            return None
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            _directories.add(directory, wake)
        except (OSError, MissingDependency) as exc:
            if self.mode == "watchdog":
                raise
            log.info("ratemw: polling %s every %gs (%s)", self.origin, self.poll_interval_seconds,
                     exc)  # fmt: skip
            return None
        return directory

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        wake = threading.Event()
        self._wakes.add(wake)
        directory = self._subscribe(wake)
        last_signature: tuple[int, ...] | None = None
        last_digest = ""
        try:
            first = True
            while not stop.is_set():
                signature = self._signature()
                if first or wake.is_set() or signature != last_signature:
                    # Let a burst of writes finish (an in-place write truncates first):
                    # wait for a quiet spell, no event and no stat change (bounded).
                    for _ in range(0 if first else 20):
                        wake.clear()
                        woken = wake.wait(self.settle_seconds)
                        now = self._signature()
                        if stop.is_set() or (not woken and now == signature):
                            break
                        signature = now
                    first = False
                    try:
                        doc = self.read()
                    except SourceUnavailable as exc:
                        log.warning("ratemw: cannot read rules: %s", exc)
                        doc = None
                    last_signature = signature
                    if doc is not None and doc.digest != last_digest:
                        last_digest = doc.digest
                        yield doc
                if not stop.is_set():
                    wake.wait(self.poll_interval_seconds)  # an event, close(), or the poll
        finally:
            self._wakes.discard(wake)
            if directory is not None:
                _directories.remove(directory, wake)

    def close(self) -> None:
        for wake in list(self._wakes):
            wake.set()

    def __repr__(self) -> str:
        return f"FileSource({self.origin!r})"


# -- Consul --------------------------------------------------------------------------


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
        httpx_module = require("httpx", extra="control", purpose="ConsulSource")
        self.key = key.strip("/")
        self.origin = f"{'consuls' if scheme == 'https' else 'consul'}://{address}/{self.key}"
        self.fmt = _key_format(self.key, fmt)
        self.wait_seconds = wait_seconds
        self.timeout_seconds = timeout_seconds
        self.backoff_seconds = backoff_seconds
        self.min_interval_seconds = min_interval_seconds
        token = token if token is not None else os.environ.get("CONSUL_HTTP_TOKEN") or None
        headers = {"X-Consul-Token": token} if token else {}
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
            raise ValueError(f"not a consul:// URL: {url!r}")
        query = dict(parse_qsl(parts.query))
        key = parts.path.strip("/")
        if not key:
            raise ValueError(f"{url!r} names no key: consul://host:8500/<key>")
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
            raise SourceUnavailable(f"{self.origin}: {type(exc).__name__}: {exc}") from exc
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
                delay = _backoff(failures, self.backoff_seconds)
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
            raise SourceUnavailable(f"{self.origin}: {type(exc).__name__}: {exc}") from exc
        if response.status_code != 200 or response.text.strip() != "true":
            raise SourceUnavailable(f"{self.origin}: PUT answered HTTP {response.status_code}")

    def close(self) -> None:
        self._closed.set()
        self._closed_or_done.set()
        self._client.close()

    def __repr__(self) -> str:
        return f"ConsulSource({self.origin!r})"


# -- Redis ---------------------------------------------------------------------------

_OUR_PARAMS = ("key", "channel", "check_interval", "format")


class RedisSource:
    """A Redis key holding the rules document, plus a pub/sub channel announcing changes.

    Publishers ``SET key`` then ``PUBLISH channel <version>`` (default channel:
    ``<key>:changed``). A subscriber that misses a message (reconnecting, say)
    still catches up: the key is read after every (re)subscription and every
    ``check_interval_seconds``. Needs redis-py (extra ``redis``).
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        channel: str | None = None,
        check_interval_seconds: float = 5.0,
        backoff_seconds: float = 0.2,
        fmt: str | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        redis_module = require("redis", extra="redis", purpose="RedisSource")
        self.key = key
        self.channel = channel or f"{key}:changed"
        self.check_interval_seconds = check_interval_seconds
        self.backoff_seconds = backoff_seconds
        self.fmt = _key_format(key, fmt)
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]  # no password in logs
        self.origin = f"{urlunsplit((parts.scheme, netloc, parts.path, '', ''))}?key={key}"
        self._client: redis.Redis = client or redis_module.Redis.from_url(
            url, socket_timeout=5.0, socket_connect_timeout=2.0
        )
        self._errors: tuple[type[Exception], ...] = (redis_module.RedisError, OSError)
        self._retryable = (*self._errors, SourceUnavailable)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> RedisSource:
        """``redis://host:6379/0?key=ratemw:rules&channel=…&check_interval=5s``."""
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        ours = {k: v for k, v in query if k in _OUR_PARAMS}
        if not ours.get("key"):
            raise ValueError(f"{url!r} names no key: add ?key=ratemw:rules")
        rest = urlencode([(k, v) for k, v in query if k not in _OUR_PARAMS])
        kwargs: dict[str, Any] = {"channel": ours.get("channel") or None, "fmt": ours.get("format")}
        if "check_interval" in ours:
            kwargs["check_interval_seconds"] = parse_duration(ours["check_interval"])
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return cls(plain, ours["key"], **{**kwargs, **options})

    def read(self) -> SourceDocument | None:
        try:
            data = self._client.get(self.key)
        except self._errors as exc:
            raise SourceUnavailable(f"{self.origin}: {type(exc).__name__}: {exc}") from exc
        if data is None:
            return None
        return SourceDocument(bytes(data), self.origin, self.fmt)  # type: ignore[arg-type]

    def watch(self, stop: threading.Event) -> Iterator[SourceDocument]:
        failures = 0
        last_digest = ""
        while not stop.is_set():
            client: Any = self._client  # redis-py's pubsub() is untyped
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                failures = 0
                fetch = True  # after every (re)subscription: messages may have been missed
                next_check = time.monotonic() + self.check_interval_seconds
                while not stop.is_set():
                    if fetch:
                        fetch = False
                        doc = self.read()
                        if doc is None:
                            log.warning("ratemw: %s is empty; the last rules stay live",
                                        self.origin)  # fmt: skip
                        elif doc.digest != last_digest:
                            last_digest = doc.digest
                            yield doc
                    # Short waits keep close() prompt; a message ends the wait at once.
                    timeout = max(0.0, min(0.5, next_check - time.monotonic()))
                    message = pubsub.get_message(timeout=timeout)
                    while message is not None:  # coalesce a burst into one read
                        fetch = fetch or message.get("type") == "message"
                        message = pubsub.get_message(timeout=0)
                    if time.monotonic() >= next_check:
                        fetch = True
                        next_check = time.monotonic() + self.check_interval_seconds
            except self._retryable as exc:
                if stop.is_set():
                    return
                failures += 1
                delay = _backoff(failures, self.backoff_seconds)
                log.warning("ratemw: %s: %s; retrying in %.1fs", self.origin, exc, delay)
                stop.wait(delay)
            finally:
                with contextlib.suppress(*self._errors):
                    pubsub.close()

    def publish(self, data: bytes, version: str) -> None:
        """``SET key data`` and ``PUBLISH channel version`` in one transaction."""
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.set(self.key, data)
                pipe.publish(self.channel, version)
                pipe.execute()
        except self._errors as exc:
            raise SourceUnavailable(f"{self.origin}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisSource({self.origin!r})"
