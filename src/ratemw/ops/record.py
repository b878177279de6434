"""Recording arrivals for replay (docs/replay.md): the settings, the buffer the hot
path appends to, and the rotating JSON Lines file a background thread writes.

The hot path only appends a tuple to :attr:`Recorder.buffer`, a deque bounded by
``buffer_size`` (a full one drops the oldest: the flush sees it full and records a gap).
Lines (identity digests, sampling, per-rule verdicts) are made in the flush thread by
the encoder the limiter binds (``ratemw.limiter.record``).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from ratemw.store._keys import _hash_key, identity_digest

__all__ = ["FORMAT", "Recorder", "RotatingLines"]

#: the first line of every recording file names the format and its version
FORMAT = "ratemw-recording/1"
#: hex characters of an identity digest in a recording (64 bits of a keyed BLAKE2b)
DIGEST_CHARS = 16
_MAX_BUFFER = 1_000_000
_MIN_FILE_BYTES = 4096
#: identities whose digest (and sampling) is remembered, per recorder
_CACHE = 65_536
_BY = re.compile(r"ip|user|tenant|api_key|header:[a-z0-9-]{1,64}|jwt:[A-Za-z0-9_.-]{1,64}")
_live: weakref.WeakSet[Recorder] = weakref.WeakSet()
_log = logging.getLogger("ratemw.record")


def _after_fork_in_child() -> None:
    for recorder in list(_live):
        recorder.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class RotatingLines:
    """A JSON Lines file capped at ``max_bytes``; when full it is gzipped to
    ``PATH.1.gz`` (older ones shift to ``.2.gz`` …, beyond ``keep`` they go), and a new
    file starts with ``header()``'s lines, so that each file reads on its own."""

    def __init__(
        self, path: Path, max_bytes: int, keep: int, header: Callable[[], list[str]]
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.keep = keep
        self._header = header
        self._file: IO[str] | None = None
        self._size = 0

    def _open(self) -> IO[str]:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._size = self._file.tell()
            if self._size == 0:
                self._put(self._file, self._header())
        return self._file

    def _put(self, file: IO[str], lines: Iterable[str]) -> None:
        for line in lines:
            file.write(line)
            file.write("\n")
            self._size += len(line) + 1  # lines are ASCII (json.dumps escapes the rest)

    def write(self, lines: list[str]) -> None:
        """Append ``lines``, rotating whenever the next line would pass the cap."""
        file = self._open()
        for line in lines:
            if self._size + len(line) + 1 > self.max_bytes:
                self.rotate()
                file = self._open()
            self._put(file, (line,))
        file.flush()

    def rotate(self) -> None:
        """Compress the current file into ``PATH.1.gz`` and start a new one."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if not self.path.exists():
            return
        for n in range(self.keep, 0, -1):
            older = self.rotated(n)
            if n == self.keep:
                older.unlink(missing_ok=True)
            elif older.exists():
                older.replace(self.rotated(n + 1))
        if self.keep:
            with open(self.path, "rb") as src, gzip.open(self.rotated(1), "wb") as dst:
                shutil.copyfileobj(src, dst)
        self.path.unlink()

    def rotated(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}.gz")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Recorder:
    """What ``Limiter(..., record=Recorder(...))`` records, and where.

    ``path``: the JSON Lines file (``{pid}`` in it is replaced by the process id: give
    each worker process its own file). ``sample``: the share of identities recorded,
    chosen by a keyed hash of the ``by`` identity (every request of a chosen identity
    is kept). ``max_bytes`` caps the live file, ``keep`` the rotated (gzipped) ones.
    ``buffer_size`` bounds the arrivals held between two flushes (beyond it the oldest
    are dropped and a gap recorded); ``flush_seconds``: how often the thread writes (0:
    never, call :meth:`flush`). ``hash_key`` keys the digests (default: the limiter's).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sample: float = 1.0,
        by: str = "ip",
        max_bytes: int = 64 * 1024 * 1024,
        keep: int = 4,
        buffer_size: int = 100_000,
        flush_seconds: float = 0.5,
        hash_key: bytes | str | None = None,
    ) -> None:
        if not 0.0 < sample <= 1.0:
            raise ValueError(f"record: sample must be in (0, 1], not {sample!r}")
        if not _MIN_FILE_BYTES <= max_bytes <= 2**40 or not 0 <= keep <= 1000:
            raise ValueError(f"record: max_bytes must be >= {_MIN_FILE_BYTES}, keep 0..1000")
        if not 1 <= buffer_size <= _MAX_BUFFER or not 0.0 <= flush_seconds <= 3600.0:
            raise ValueError(f"record: buffer_size 1..{_MAX_BUFFER}, flush_seconds 0..3600")
        if not _BY.fullmatch(by):
            raise ValueError(
                "record: by must be ip, user, tenant, api_key, header:NAME or jwt:CLAIM"
            )
        self.template = os.fspath(path)
        self.sample = float(sample)
        self.by = by
        self.max_bytes = max_bytes
        self.keep = keep
        self.buffer_size = buffer_size
        self.flush_seconds = flush_seconds
        self._key = _hash_key(hash_key) if hash_key is not None else None
        #: what the hot path appends to; the flush thread swaps in a fresh list
        self.buffer: deque[Any] = deque(maxlen=buffer_size)
        #: arrivals known lost (a failed write); a full buffer adds a gap of its own
        self.dropped = 0
        #: (buffered entries, final) -> lines; final: nothing may wait for a later flush
        self.encode: Callable[[list[Any], bool], Iterable[dict[str, Any]]] | None = None
        self.header_extra: Callable[[], dict[str, Any]] = dict
        self._lock = threading.Lock()  # one flush at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = -1
        self._out: RotatingLines | None = None
        self._threshold = int(self.sample * 2**64)
        # Identities repeat: their digests are computed once (the flush thread's cost).
        self._digests: dict[tuple[str, object], str] = {}
        self._sampled: dict[object, bool] = {}
        _live.add(self)  # a forked child starts afresh (after_fork)

    @classmethod
    def coerce(cls, value: Recorder | Mapping[str, Any] | str | os.PathLike[str]) -> Recorder:
        if isinstance(value, Recorder):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        return cls(value)

    # -- set by the limiter ------------------------------------------------

    def bind_key(self, hash_key: bytes | str | None) -> None:
        """Use the limiter's hash key unless one was given."""
        if self._key is None:
            self._key = _hash_key(hash_key)

    def digest(self, kind: str, value: object) -> str:
        """The keyed digest of one identity, as the recording shows it."""
        cache = self._digests
        hit = cache.get((kind, value))
        if hit is None:
            assert self._key is not None
            hit = identity_digest((kind, value), self._key)[:DIGEST_CHARS]
            if len(cache) >= _CACHE:
                cache.clear()
            cache[kind, value] = hit
        return hit

    def sampled(self, value: object) -> bool:
        """Whether the identity ``value`` (of kind ``by``) is in the sample."""
        if self._threshold >= 2**64:
            return True
        cache = self._sampled
        hit = cache.get(value)
        if hit is None:
            assert self._key is not None
            data = repr(("sample", value)).encode("utf-8", "backslashreplace")
            h = hashlib.blake2b(data, key=self._key, digest_size=8).digest()
            hit = int.from_bytes(h, "big") < self._threshold
            if len(cache) >= _CACHE:
                cache.clear()
            cache[value] = hit
        return hit

    # -- the file ----------------------------------------------------------

    @property
    def path(self) -> Path:
        return Path(self.template.replace("{pid}", str(os.getpid())))

    def _header(self) -> list[str]:
        head = {
            "format": FORMAT,
            "sample": self.sample,
            "by": self.by,
            "pid": os.getpid(),
            "digest": f"blake2b-keyed-{DIGEST_CHARS * 4}",
            "started": round(time.time(), 6),
        }
        head.update(self.header_extra())
        return [_dumps(head)]

    def _writer(self) -> RotatingLines:
        if self._out is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._out = RotatingLines(self.path, self.max_bytes, self.keep, self._header)
        return self._out

    def flush(self, final: bool = False) -> int:
        """Write what the buffer holds now; returns the number of lines written.

        Arrivals still holding a concurrency slot wait for a later flush unless ``final``.
        """
        with self._lock:
            buffer = self.buffer
            n = len(buffer)
            # Full: appends may have pushed arrivals out (how many is not known: at least 1).
            dropped, self.dropped = self.dropped + (n >= self.buffer_size), 0
            popleft = buffer.popleft
            batch = [popleft() for _ in range(n)]
            try:
                encoded = self.encode(batch, final) if self.encode else ()
                lines = [_dumps(rec) for rec in encoded]
                if dropped:
                    lines.append(_dumps({"gap": dropped}))
                if lines:
                    self._writer().write(lines)
            except Exception:
                # What was not written is a gap, so a replay knows the file is incomplete.
                self.dropped += len(batch) + dropped
                raise
            return len(lines)

    # -- the thread --------------------------------------------------------

    def start(self) -> None:
        if self.flush_seconds <= 0 or (self._thread is not None and self._thread.is_alive()):
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ratemw-record", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                self.flush()
            except Exception:  # a full disk must not stop the next pass
                _log.warning("recording: a flush failed", exc_info=True)

    def after_fork(self) -> None:
        """In a forked child: nothing of the parent's buffer, file or thread."""
        self.buffer.clear()
        self.dropped = 0
        self._lock = threading.Lock()
        self._out = None
        self._thread = None
        stopped, self._stop = self._stop.is_set(), threading.Event()
        if not stopped:
            self.start()

    def close(self) -> None:
        """Stop the thread, write what is left, close the file. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30.0)
        self._thread = None
        _live.discard(self)
        self.flush(final=True)
        if self._out is not None:
            self._out.close()


def _dumps(obj: Mapping[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
