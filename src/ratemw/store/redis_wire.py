"""What the Redis store and its asyncio twin share below the client: the target a URL
names (single server, Sentinel or Cluster), how a redis-py error counts for the breaker,
and the shapes of replies."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from ratemw.errors import StoreError
from ratemw.store import _scripts as s
from ratemw.store.base import HeartbeatResult

__all__ = [
    "SENTINEL_OPTIONS",
    "Target",
    "classify",
    "parse_target",
    "result_or_error",
    "sentinel_address",
    "store_error",
    "watched",
]

# what the Sentinel connections share with the master's: timeouts and no hidden retries
SENTINEL_OPTIONS = ("socket_", "retry")
_MAX_SENTINELS = 16


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL points: ``kind`` is ``single``, ``sentinel`` or ``cluster``."""

    kind: str
    url: str = field(repr=False)  # may carry a password: never in a repr
    sentinels: tuple[tuple[str, int], ...] = ()
    service: str = ""
    options: dict[str, Any] = field(default_factory=dict, repr=False)


def sentinel_address(host: str) -> tuple[str, int]:
    """One Sentinel's ``host[:port]`` or ``[v6 address][:port]`` (port 26379 by default)."""
    name, port = host, "26379"
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else port
    elif ":" in host:
        name, _, port = host.rpartition(":")
    if not name or not port.isdigit() or not 0 < int(port) < 65536:
        # the userinfo is split off already: no credential can reach this message
        raise ValueError(f"bad Sentinel address {host[:80]!r} in a redis+sentinel:// URL")
    return name, int(port)


def parse_target(url: str, cluster: bool) -> Target:
    """Parse ``redis://``, ``rediss://``, ``unix://``, ``redis+cluster://host:port`` and
    ``redis+sentinel://[user:password@]host:port[,host:port]/service_name[/db]``."""
    scheme, _, rest = url.partition("://")
    if scheme in ("redis+cluster", "rediss+cluster"):
        return Target("cluster", f"{scheme.split('+')[0]}://{rest}")
    if scheme != "redis+sentinel":
        return Target("cluster" if cluster else "single", url)
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    sentinels = [sentinel_address(host) for host in hosts.split(",")]
    if len(sentinels) > _MAX_SENTINELS:
        raise ValueError(f"a redis+sentinel:// URL names at most {_MAX_SENTINELS} Sentinels")
    service, _, db = parts.path.strip("/").partition("/")
    if not service:
        raise ValueError("a redis+sentinel:// URL needs a service name as its path")
    options: dict[str, Any] = {"db": int(db or 0)}
    if userinfo:
        user, _, password = userinfo.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    return Target("sentinel", url, tuple(sentinels), service, options)


def classify(exc: BaseException) -> tuple[bool, bool]:
    """(counts against the node's breaker, may be retried) for a backend exception."""
    from redis import exceptions as rx

    if isinstance(exc, rx.ConnectionError):
        return True, True
    if isinstance(exc, (rx.ClusterDownError, rx.ReadOnlyError, rx.TryAgainError)):
        return True, False
    if isinstance(exc, rx.ResponseError):
        # the node answered: a script or data error, not an outage; but a master refusing
        # writes for want of replicas (min-replicas-to-write) is down for a limiter
        return "NOREPLICAS" in str(exc), False
    return True, False


def store_error(what: str, exc: BaseException) -> StoreError:
    error = StoreError(f"redis {what} failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def watched(reply: Any, watch: str | None) -> HeartbeatResult:
    """A heartbeat's answer, with the watched counter when one was asked for."""
    result = s.heartbeat_reply(reply)
    if watch is None or len(reply) < 3:
        return result
    return HeartbeatResult(result.processes, result.server_time, int(reply[2]))


def result_or_error(reply: Any) -> Any:
    return store_error("take", reply) if isinstance(reply, BaseException) else s.take_reply(reply)
