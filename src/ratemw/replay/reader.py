"""Reading a recording (``ratemw.ops.record``): the live file and its gzipped
rotations, oldest first, each line checked and bounded before it is trusted."""

from __future__ import annotations

import functools
import gzip
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ratemw.ops.record import FORMAT
from ratemw.rules.model import NAME_PATTERN

__all__ = ["Arrival", "Recording", "RecordingError", "files_of", "read_recording"]

#: the longest line read (a recorder writes far shorter ones)
MAX_LINE = 64 * 1024
#: the most arrivals one replay reads
MAX_ARRIVALS = 5_000_000
_DIGEST = re.compile(r"[0-9a-f]{8,64}")
_KIND = re.compile(r"(ip|user|tenant|api_key|header:[a-z0-9-]{1,64}|jwt:[A-Za-z0-9_.-]{1,64})")
_VERDICTS = frozenset(("allow", "reject", "shadow"))
_decode = json.JSONDecoder().decode
_NAME = re.compile(NAME_PATTERN)
#: the latest wall time read (year 2242): later ones are damage, and break time formatting
_LAST_WALL = float(2**33)


class RecordingError(Exception):
    """The recording cannot be read (missing, not a recording, malformed)."""


@dataclass(frozen=True, slots=True)
class Arrival:
    """One recorded request: times, what it asked for, who (hashed), what was decided."""

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


def files_of(path: Path) -> list[Path]:
    """``path``'s rotated files (``PATH.N.gz``, oldest first) then ``path`` itself."""
    rotated = []
    for other in path.parent.glob(f"{glob_escape(path.name)}.*.gz"):
        n = other.name[len(path.name) + 1 : -3]
        if n.isdigit():
            rotated.append((int(n), other))
    out = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        out.append(path)
    return out


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def _lines(path: Path) -> Iterator[str]:
    with _open(path) as raw:
        while True:
            line = raw.readline(MAX_LINE + 1)
            if not line:
                return
            if len(line) > MAX_LINE:
                # The rest of an overlong line is skipped, not parsed as lines of its own.
                while line and not line.endswith(b"\n"):
                    line = raw.readline(MAX_LINE + 1)
                yield ""
                continue
            yield line.decode("utf-8", "replace")


def read_recording(paths: list[Path], max_arrivals: int = MAX_ARRIVALS) -> Recording:
    """Read ``paths`` (see :func:`files_of`) into one :class:`Recording`."""
    if not paths:
        raise RecordingError("no recording file found")
    rec = Recording()
    headers: set[tuple[float, str]] = set()
    for path in paths:
        rec.files.append(path.name)
        try:
            version = _read_file(path, rec, headers, max_arrivals)
        except OSError as exc:
            raise RecordingError(f"cannot read {path.name}: {exc.strerror or exc}") from None
        except (EOFError, gzip.BadGzipFile) as exc:
            raise RecordingError(f"{path.name}: damaged gzip file ({exc})") from None
        if version is None:
            raise RecordingError(f"{path.name}: not a ratemw recording (no {FORMAT} header)")
    if len(headers) > 1:
        raise RecordingError("files of different samplings are mixed: replay them apart")
    rec.arrivals.sort(key=lambda a: a.t)  # stable: equal times keep the file order
    return rec


def _read_file(path: Path, rec: Recording, headers: set[tuple[float, str]], cap: int) -> str | None:
    version: str | None = None
    for n, text in enumerate(_lines(path)):
        try:
            obj = _decode(text) if text else None
        except ValueError:
            obj = None
        if n == 0 and (not isinstance(obj, dict) or obj.get("format") != FORMAT):
            return None
        if not isinstance(obj, dict):
            rec.bad_lines += 1
            continue
        if n == 0:
            sample, by = obj.get("sample"), obj.get("by")
            if (
                not isinstance(sample, float | int)
                or not 0 < sample <= 1
                or not isinstance(by, str)
            ):
                raise RecordingError(f"{path.name}: a header without a valid sample")
            rec.sample, rec.by = float(sample), by
            headers.add((rec.sample, by))
            if isinstance(obj.get("pid"), int):
                rec.pids.add(obj["pid"])
            version = _version(obj.get("rules"), rec)
            rec.shared = rec.shared or obj.get("shared") is True
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
            elif len(rec.arrivals) >= cap:
                raise RecordingError(f"more than {cap} arrivals: replay a shorter recording")
            else:
                rec.arrivals.append(arrival)
    return version or ""


def _version(value: Any, rec: Recording) -> str:
    version = value if isinstance(value, str) and re.fullmatch(r"[0-9a-f]{1,128}", value) else ""
    if version and version not in rec.versions:
        rec.versions.append(version)
    return version


def _text(obj: dict[str, Any], name: str, cap: int) -> str | None:
    value = obj.get(name)
    return value if isinstance(value, str) and len(value) <= cap else None


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


def _arrival(obj: dict[str, Any], version: str) -> Arrival | None:
    t, wall = _time(obj.get("t")), _time(obj.get("w"))
    method, path = _text(obj, "m", 16), _text(obj, "p", 2048)
    host, status = _text(obj, "h", 255), obj.get("s")
    raw_ids, raw_v = obj.get("id"), obj.get("v", {})
    if t is None or wall is None or method is None or path is None or host is None:
        return None
    if not 0.0 <= wall <= _LAST_WALL or not abs(t) <= _LAST_WALL:
        return None
    if not isinstance(status, int) or not 100 <= status <= 599:
        return None
    if not isinstance(raw_ids, dict) or not isinstance(raw_v, dict) or len(raw_v) > 256:
        return None
    try:
        ids, verdicts = _ids(tuple(raw_ids.items())), _verdicts(tuple(raw_v.items()))
    except TypeError:  # an unhashable value: not what a recorder writes
        return None
    if ids is None or verdicts is None:
        return None
    tier = _text(obj, "tier", 256)
    if tier is not None and not _NAME.fullmatch(tier):
        return None  # tiers are rule-file names; anything else is not from a recorder
    finish = _time(obj.get("fin"))
    return Arrival(
        t=t,
        wall=wall,
        method=method,
        path=path,
        host=host,
        ids=ids,
        status=status,
        verdicts=verdicts,
        route=_text(obj, "r", 256),
        tier=tier,
        finish=finish if finish is not None and finish >= t else None,
        gated=obj.get("gate") == 1,
        rules=version,
    )
