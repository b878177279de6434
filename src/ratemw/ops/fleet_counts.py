"""The fleet's decisions per rule, in short Redis time buckets, for the console's charts.

Each limiter adds what it decided since its last push (per rule, verdict and mode, the
share near the limit, and spike alerts) to the hash of the current minute,
``ratemw:<app>:{fleet}:m:<minute>`` (field ``rule|verdict|mode``, ``rule|near``,
``rule|spikes``), which expires :data:`COUNTS_TTL_SECONDS` after its last write. The
push is one script call staged in the operations pass's pipeline whenever the top
offenders are due (``top_push_seconds``), and only when something was decided: an idle
process sends nothing (docs/global.md, "Redis traffic"). The control service reads the
last hour with :func:`read_counts` (one pipelined round trip).

Each push is applied exactly once: it carries this process's id and a sequence number,
which the script keeps in the same hash (field ``~seq|<id>``) and checks, so a push whose
reply was lost (a timeout on a loaded host) is sent again as it was and not counted
twice; what was decided meanwhile goes with the push after it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratemw.ops.stats import VERDICTS, StatsRegistry

__all__ = [
    "BUCKET_SECONDS",
    "COUNTS_TTL_SECONDS",
    "FleetCounts",
    "FleetWindow",
    "counts_key",
    "read_counts",
]

BUCKET_SECONDS = 60
COUNTS_TTL_SECONDS = 7200  # an hour is shown; the second hour covers clock skew and reads
#: KEYS[1]: the minute's hash. ARGV: the TTL, the process id, the push's sequence number,
#: then (field, delta) pairs. A sequence number already applied is skipped (returns 0).
COUNTS_LUA = """
local key, seen = KEYS[1], '~seq|' .. ARGV[2]
local seq = tonumber(ARGV[3])
if tonumber(redis.call('HGET', key, seen) or '0') >= seq then
  return 0
end
for i = 4, #ARGV, 2 do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
end
redis.call('HSET', key, seen, seq)
redis.call('EXPIRE', key, tonumber(ARGV[1]))
return 1
"""
COUNTS_SHA = hashlib.sha1(COUNTS_LUA.encode()).hexdigest()
#: the field suffixes of one rule, as read back: ``allowed|enforce`` ... ``near``, ``spikes``
FIELDS: tuple[str, ...] = (*(f"{v}|{m}" for v, m, _ in VERDICTS), "near", "spikes")


def counts_key(prefix: str, minute: int) -> str:
    """The hash of one minute under an operations key ``prefix`` (``Layout.prefix``)."""
    return f"{prefix}{{fleet}}:m:{minute}"


class FleetCounts:
    """This process's cumulative counts, what of them Redis has, and the push in flight."""

    def __init__(self, stats: StatsRegistry, spikes: Mapping[str, int]) -> None:
        self._stats = stats
        self._spikes = spikes
        self._sent: dict[str, int] = {}
        #: the push not yet acknowledged: (key, arguments, the totals it brings Redis to)
        self._pending: tuple[str, list[Any], dict[str, int]] | None = None
        self._pid = os.getpid()
        self._id = secrets.token_hex(8)
        self._seq = 0
        self.loaded = False  # the script was sent with EVAL on this connection

    def totals(self) -> dict[str, int]:
        """field -> count since this process started (summed over routes and tiers)."""
        out: dict[str, int] = {}
        registry = self._stats
        for stats in registry.all():
            with registry.lock:  # the rejection queues count too: never read mid-drain
                values = [(f"{v}|{m}", getattr(stats, slot)) for v, m, slot in VERDICTS]
                values.append(("near", stats.near))
            rule = stats.labels[0]
            for name, value in values:
                if value:
                    key = f"{rule}|{name}"
                    out[key] = out.get(key, 0) + value
        for rule, alerts in list(self._spikes.items()):
            if alerts:
                out[f"{rule}|spikes"] = alerts
        return out

    def command(self, prefix: str, wall: float) -> list[Any] | None:
        """The script call of the push in flight (again, unchanged, until it is
        acknowledged), else of what grew since the last one; None when nothing did.
        Call :meth:`sent` with its reply."""
        if os.getpid() != self._pid:  # a forked child reports only its own decisions
            self._pid, self._id, self._seq = os.getpid(), secrets.token_hex(8), 0
            self._pending, self._sent = None, self.totals()
        if self._pending is None:
            totals = self.totals()
            pairs: list[Any] = []
            for name, value in totals.items():
                delta = value - self._sent.get(name, 0)
                if delta > 0:
                    pairs += [name, delta]
            if not pairs:
                return None
            self._seq += 1
            key = counts_key(prefix, int(wall // BUCKET_SECONDS))
            args = [COUNTS_TTL_SECONDS, self._id, self._seq, *pairs]
            self._pending = (key, args, totals)
        key, args, _ = self._pending
        if self.loaded:
            return ["EVALSHA", COUNTS_SHA, 1, key, *args]
        return ["EVAL", COUNTS_LUA, 1, key, *args]

    def sent(self, client: Any, command: list[Any], reply: Any) -> None:
        """Take the reply to ``command``: a ``NOSCRIPT`` is sent again with ``EVAL``;
        another error is raised and the push stays in flight (sent again next time)."""
        if isinstance(reply, Exception):
            from redis.exceptions import NoScriptError

            if not isinstance(reply, NoScriptError):
                raise reply
            client.execute_command("EVAL", COUNTS_LUA, *command[2:])
        if self._pending is not None:
            self._sent = self._pending[2]
            self._pending = None
        self.loaded = True

    def forget(self) -> None:
        """A new connection (fork, Redis back): load the script again."""
        self.loaded = False


@dataclass(frozen=True, slots=True)
class FleetWindow:
    """The fleet's counts per minute: ``series[rule][field]`` has one value per minute
    from ``first_minute`` (oldest first); fields are :data:`FIELDS`."""

    first_minute: int
    minutes: int
    series: dict[str, dict[str, list[int]]] = field(default_factory=dict)

    def total(self, rule: str, name: str) -> int:
        return sum(self.series.get(rule, {}).get(name, ()))

    def verdict_totals(self) -> dict[str, int]:
        """``verdict|mode`` -> decisions of every rule in the window."""
        out: dict[str, int] = {}
        for fields in self.series.values():
            for name, values in fields.items():
                if name not in ("near", "spikes"):
                    out[name] = out.get(name, 0) + sum(values)
        return out


def read_counts(client: Any, prefix: str, now: float, minutes: int = 60) -> FleetWindow:
    """The last ``minutes`` (1..120) of the fleet's counts, the current minute included."""
    minutes = max(1, min(minutes, COUNTS_TTL_SECONDS // BUCKET_SECONDS))
    last = int(now // BUCKET_SECONDS)
    first = last - minutes + 1
    pipe = client.pipeline(transaction=False)
    for minute in range(first, last + 1):
        pipe.hgetall(counts_key(prefix, minute))
    columns: dict[Any, list[int]] = {}  # field -> one value per minute
    for index, found in enumerate(pipe.execute()):
        for raw, value in found.items():
            column = columns.get(raw)
            if column is None:
                column = columns[raw] = [0] * minutes
            column[index] = int(value)
    series: dict[str, dict[str, list[int]]] = {}
    for raw, column in columns.items():
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        rule, _, what = name.partition("|")
        if what in FIELDS:  # else written by a newer ratemw: not ours to chart
            series.setdefault(rule, {})[what] = column
    return FleetWindow(first, minutes, series)
