"""Reading a recording (``ratemw.ops.record``): every line checked and bounded before it
is trusted, several files (rotations, processes, hosts) merged into one timeline."""

from __future__ import annotations

import contextlib
import functools
import gc
import gzip
import itertools
import math
import operator
import re
import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ratemw.ops.record import FORMAT
from ratemw.replay.lines import PID, decode, files_of, line_blocks, objects
from ratemw.rules.model import NAME_PATTERN

__all__ = ["PID", "Arrival", "Recording", "RecordingError", "files_of", "read_recording"]

#: the most arrivals one replay reads
MAX_ARRIVALS = 5_000_000
_DIGEST = re.compile(r"[0-9a-f]{8,64}")
_KIND = re.compile(r"(ip|user|tenant|api_key|header:[a-z0-9-]{1,64}|jwt:[A-Za-z0-9_.-]{1,64})")
_VERDICTS = frozenset(("allow", "reject", "shadow"))
_NONE: dict[str, Any] = {}  # no verdicts (never changed)
_BY_TIME = operator.attrgetter("t")
_ROTATED = re.compile(r"\.[0-9]+\.gz$")
_NAME = re.compile(NAME_PATTERN)
#: processes whose clocks (wall minus monotonic) differ by more ran on different hosts
#: (one host's wall clock drifts from its monotonic one by far less over a recording)
SAME_CLOCK_SECONDS = 1.0
#: the latest wall time read (year 2242): later ones are damage, and break time formatting
_LAST_WALL = float(2**33)


class RecordingError(Exception):
    """The recording cannot be read (missing, not a recording, malformed)."""


class Arrival(NamedTuple):
    """One recorded request: times, what it asked for, who (hashed), what was decided.

    A named tuple, not a dataclass: a replay makes a million of them, and a tuple is
    made several times faster than a frozen dataclass.
    """

    t: float
    wall: float
    method: str
    path: str
    host: str
    ids: tuple[tuple[str, str], ...]
    status: int
    verdicts: tuple[tuple[str, str], ...]
    route: str | None = None
    tier: str | None = None
    finish: float | None = None
    gated: bool = False
    rules: str = ""  # the version of the rules in force when it was decided

    @property
    def allowed(self) -> bool:
        return self.status < 300


@dataclass(slots=True)
class Recording:
    """Every arrival of a recording in time order, and what its files say about it."""

    arrivals: list[Arrival] = field(default_factory=list)
    sample: float = 1.0
    by: str = "ip"
    versions: list[str] = field(default_factory=list)  # in the order they appeared
    gaps: int = 0  # arrivals the recorder dropped (a full buffer, a failed write)
    bad_lines: int = 0
    pids: set[int] = field(default_factory=set)
    shared: bool = False  # made by limiters with global (leased) limits
    files: list[str] = field(default_factory=list)


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic garbage collector off for a while (the whole process's: other threads'
    cycles wait until it ends). A replay makes millions of objects, none of them in a
    cycle, and each collection would walk them all again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def read_recording(paths: list[Path], max_arrivals: int = MAX_ARRIVALS) -> Recording:
    """Read ``paths`` (see :func:`files_of`) into one :class:`Recording`."""
    if not paths:
        raise RecordingError("no recording file found")
    with paused_gc():
        return _read_all(paths, max_arrivals)


def _read_all(paths: list[Path], max_arrivals: int) -> Recording:
    rec = Recording()
    headers: set[tuple[float, str]] = set()
    starts: list[int] = []
    clocks: list[Path] = []  # per file: its live file (rotations share its clock)
    for path in paths:
        rec.files.append(path.name)
        starts.append(len(rec.arrivals))
        try:
            version = _read_file(path, rec, headers, max_arrivals)
        except OSError as exc:
            raise RecordingError(f"cannot read {path.name}: {exc.strerror or exc}") from None
        except (EOFError, gzip.BadGzipFile) as exc:
            raise RecordingError(f"{path.name}: damaged gzip file ({exc})") from None
        if version is None:
            raise RecordingError(f"{path.name}: not a ratemw recording (no {FORMAT} header)")
        # A live file and its rotations (PATH.N.gz) were written by one process.
        clocks.append(path.with_name(_ROTATED.sub("", path.name)))
    if len(headers) > 1:
        raise RecordingError("files of different samplings are mixed: replay them apart")
    _align(rec.arrivals, [*starts, len(rec.arrivals)], clocks)
    rec.arrivals.sort(key=_BY_TIME)  # stable: equal times keep the file order
    return rec


def _align(arrivals: list[Arrival], bounds: list[int], clocks: list[Path]) -> None:
    """Put the arrivals of several files on the first file's monotonic clock.

    A process's files (its rotations) share one clock. Each other process's clock
    offset (wall minus monotonic, the median over its first file's arrivals; wall times
    are rounded to the millisecond) says whether it ran on the same host as the first:
    one host's processes share the monotonic clock, and their arrivals are ordered by
    it, exactly. A process of another host is shifted by the difference of the offsets:
    its arrivals fall in by wall time.
    """
    spans = list(itertools.pairwise(bounds))
    shifts: dict[Path, float] = {}
    first: float | None = None
    for (a, b), clock in zip(spans, clocks, strict=True):
        if clock in shifts:
            continue
        offset = _offset(arrivals[a:b])
        if offset is None:
            continue
        if first is None:
            first = offset
        gap = offset - first
        shifts[clock] = gap if abs(gap) > SAME_CLOCK_SECONDS else 0.0
    for (a, b), clock in zip(spans, clocks, strict=True):
        shift = shifts.get(clock, 0.0)
        if not shift:
            continue
        for n in range(a, b):
            x = arrivals[n]
            fin = None if x.finish is None else x.finish + shift
            arrivals[n] = x._replace(t=x.t + shift, finish=fin)


def _offset(arrivals: list[Arrival]) -> float | None:
    if not arrivals:
        return None
    step = max(1, len(arrivals) // 1001)
    return statistics.median(a.wall - a.t for a in arrivals[::step])


def _read_file(path: Path, rec: Recording, headers: set[tuple[float, str]], cap: int) -> str | None:
    version: str | None = None
    blocks = line_blocks(path)
    head = next(blocks, [""])
    first = head[0]
    try:
        obj = decode(first) if first else None
    except ValueError:
        obj = None
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        return None
    sample, by = obj.get("sample"), obj.get("by")
    if not isinstance(sample, float | int) or not 0 < sample <= 1 or not isinstance(by, str):
        raise RecordingError(f"{path.name}: a header without a valid sample")
    rec.sample, rec.by = float(sample), by
    headers.add((rec.sample, by))
    if isinstance(obj.get("pid"), int):
        rec.pids.add(obj["pid"])
    version = _version(obj.get("rules"), rec)
    rec.shared = rec.shared or obj.get("shared") is True
    arrivals = rec.arrivals
    for values in objects(itertools.chain([head[1:]], blocks)):
        for obj in values:
            if obj.__class__ is not dict:
                rec.bad_lines += 1
                continue
            if "rules" in obj:
                version = _version(obj["rules"], rec)
            elif "gap" in obj:
                gap = obj["gap"]
                rec.gaps += gap if isinstance(gap, int) and gap > 0 else 1
            else:
                arrival = _arrival(obj, version or "")
                if arrival is None:
                    rec.bad_lines += 1
                elif len(arrivals) >= cap:
                    raise RecordingError(f"more than {cap} arrivals: replay a shorter recording")
                else:
                    arrivals.append(arrival)
    return version or ""


def _version(value: Any, rec: Recording) -> str:
    version = value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{1,128}", value) else ""
    if version and version not in rec.versions:
        rec.versions.append(version)
    return version


def _time(value: Any) -> float | None:
    if isinstance(value, float | int) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


# Identities and verdicts repeat from line to line: each distinct one is checked once.
@functools.lru_cache(maxsize=65_536)
def _ids(items: tuple[tuple[Any, Any], ...]) -> tuple[tuple[str, str], ...] | None:
    if len(items) > 16:
        return None
    for kind, digest in items:
        if not (_KIND.fullmatch(kind) and isinstance(digest, str) and _DIGEST.fullmatch(digest)):
            return None
    return tuple(sorted(items))


@functools.lru_cache(maxsize=65_536)
def _verdicts(items: tuple[tuple[Any, Any], ...]) -> tuple[tuple[str, str], ...] | None:
    for name, verdict in items:
        if not isinstance(name, str) or len(name) > 256 or verdict not in _VERDICTS:
            return None
    return items


# typed: 200 and 200.0 (or True) are different keys, as they are different values here.
@functools.lru_cache(maxsize=65_536, typed=True)
def _request(
    method: Any, path: Any, host: Any, status: Any, route: Any, tier: Any
) -> tuple[str, str, str, int, str | None, str | None] | None:
    """What an arrival asked for and got, checked once per distinct combination."""
    if not (_bounded(method, 16) and _bounded(path, 2048) and _bounded(host, 255)):
        return None
    if status.__class__ is not int or not 100 <= status <= 599:
        return None
    route = route if _bounded(route, 256) else None
    if not _bounded(tier, 256):
        tier = None
    elif not _NAME.fullmatch(tier):
        return None  # tiers are rule-file names; anything else is not from a recorder
    return method, path, host, status, route, tier


def _bounded(value: Any, cap: int) -> bool:
    return isinstance(value, str) and len(value) <= cap


def _arrival(obj: dict[str, Any], version: str) -> Arrival | None:
    get = obj.get
    t, wall = get("t"), get("w")
    # The recorder writes floats: the checks of other values only when they are not.
    if t.__class__ is not float or wall.__class__ is not float:
        t, wall = _time(t), _time(wall)
        if t is None or wall is None:
            return None
    if not 0.0 <= wall <= _LAST_WALL or not -_LAST_WALL <= t <= _LAST_WALL:
        return None  # also NaN and the infinities
    raw_ids, raw_v = get("id"), get("v", _NONE)
    if raw_ids.__class__ is not dict or raw_v.__class__ is not dict or len(raw_v) > 256:
        return None
    route, tier = get("r"), get("tier")
    # Not a string: no route or tier (and an unhashable one must not reach the cache).
    route = route if route.__class__ is str else None
    tier = tier if tier.__class__ is str else None
    try:
        request = _request(get("m"), get("p"), get("h"), get("s"), route, tier)
        ids, verdicts = _ids(tuple(raw_ids.items())), _verdicts(tuple(raw_v.items()))
    except TypeError:  # an unhashable value: not what a recorder writes
        return None
    if request is None or ids is None or verdicts is None:
        return None
    method, path, host, status, route, tier = request
    finish = get("fin")
    if finish is not None:
        finish = _time(finish)
        if finish is None or not finish >= t:
            finish = None
    return Arrival(
        t, wall, method, path, host, ids, status, verdicts, route, tier, finish,
        get("gate") == 1, version,
    )  # fmt: skip
