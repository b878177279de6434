"""``RedisSource``: rules from a Redis key, announced on a pub/sub channel."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ratemw._deps import require
from ratemw.config.base import SourceDocument, SourceUnavailable, backoff, key_format, log
from ratemw.redact import redact, scrub
from ratemw.rules._source import ParseLimits
from ratemw.rules.notation import parse_duration

if TYPE_CHECKING:
    import redis


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
        self.fmt = key_format(key, fmt)
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]  # no user or password in logs
        self.origin = f"{urlunsplit((parts.scheme, netloc, parts.path, '', ''))}?key={key}"
        self._url = url  # for scrub(): its credentials never reach a message
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
            raise ValueError(f"{redact(url)!r} names no key: add ?key=ratemw:rules")
        rest = urlencode([(k, v) for k, v in query if k not in _OUR_PARAMS])
        kwargs: dict[str, Any] = {"channel": ours.get("channel") or None, "fmt": ours.get("format")}
        if "check_interval" in ours:
            kwargs["check_interval_seconds"] = parse_duration(ours["check_interval"])
        plain = urlunsplit((parts.scheme, parts.netloc, parts.path, rest, ""))
        return cls(plain, ours["key"], **{**kwargs, **options})

    def read(self) -> SourceDocument | None:
        try:
            # At most one byte past the size bound, in one round trip: the loader refuses
            # an oversized document without this process holding all of it.
            pipe = self._client.pipeline(transaction=False)
            pipe.exists(self.key)
            pipe.getrange(self.key, 0, ParseLimits.from_env().max_bytes)
            found, data = pipe.execute()
        except self._errors as exc:
            raise SourceUnavailable(self._failed(exc)) from exc
        if not found:
            return None
        return SourceDocument(bytes(data), self.origin, self.fmt)

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
                delay = backoff(failures, self.backoff_seconds)
                log.warning("ratemw: %s; retrying in %.1fs", self._failed(exc), delay)
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
            raise SourceUnavailable(self._failed(exc)) from exc

    def _failed(self, exc: BaseException) -> str:
        if isinstance(exc, SourceUnavailable):
            return str(exc)  # already made here
        return scrub(f"{self.origin}: {type(exc).__name__}: {exc}", [self._url])

    def close(self) -> None:
        with contextlib.suppress(*self._errors):
            self._client.close()

    def __repr__(self) -> str:
        return f"RedisSource({self.origin!r})"
