"""A recording's files and their lines: the rotated files beside a live one, every
process's files behind a ``{pid}`` name, lines bounded before they are decoded, and JSON
decoded many lines per decoder call."""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["MAX_LINE", "PID", "decode", "files_of", "line_blocks", "objects"]

#: the longest line read (a recorder writes far shorter ones)
MAX_LINE = 64 * 1024
#: what a recording's path names for the process id (``Recorder``)
PID = "{pid}"
#: lines decoded per decoder call (a batch is at most this many overlong-capped lines)
_BATCH = 512
#: bytes read at a time
_BLOCK = 1024 * 1024
decode = json.JSONDecoder().decode


def files_of(path: Path) -> list[Path]:
    """``path``'s rotated files (``PATH.N.gz``, oldest first) then ``path`` itself.

    A name with ``{pid}`` (the recorder's per-process files) stands for every process's
    files: each process's, in the order of their ids, for :func:`read_recording` to merge.
    """
    if PID in path.name:
        return [f for name in _process_files(path) for f in files_of(path.with_name(name))]
    rotated = []
    for other in path.parent.glob(f"{glob_escape(path.name)}.*.gz"):
        n = other.name[len(path.name) + 1 : -3]
        if n.isdigit():
            rotated.append((int(n), other))
    out = [p for _, p in sorted(rotated, reverse=True)]
    if path.exists():
        out.append(path)
    return out


def _process_files(path: Path) -> list[str]:
    """The live names ``path``'s ``{pid}`` stands for (a process's rotated files may
    outlive its live file), ordered by process id."""
    head, _, tail = path.name.partition(PID)
    name = re.compile(f"{re.escape(head)}([0-9]{{1,10}}){re.escape(tail)}(?:\\.[0-9]+\\.gz)?")
    pids = set()
    pattern = f"{glob_escape(head)}*{glob_escape(tail)}*"
    for other in path.parent.glob(pattern):
        found = name.fullmatch(other.name)
        if found:
            pids.add(int(found[1]))
    return [f"{head}{pid}{tail}" for pid in sorted(pids)]


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def line_blocks(path: Path) -> Iterator[list[str]]:
    """The lines, a block read at a time, without their newlines; ``""`` for a line of
    ``MAX_LINE`` bytes or more (its newline counted), whose bytes are skipped, not parsed
    as lines of their own."""
    with _open(path) as raw:
        rest = b""
        overlong = False  # inside a line already known to be too long
        while block := raw.read(_BLOCK):
            lines = (rest + block).split(b"\n") if rest else block.split(b"\n")
            rest = lines.pop()
            out = []
            for line in lines:
                if overlong:
                    overlong = False
                    out.append("")
                elif len(line) >= MAX_LINE:
                    out.append("")
                else:
                    out.append(line.decode("utf-8", "replace"))
            if out:
                yield out
            if len(rest) > MAX_LINE:
                overlong, rest = True, b""
        if overlong or len(rest) > MAX_LINE:
            yield [""]
        elif rest:
            yield [rest.decode("utf-8", "replace")]


def objects(blocks: Iterable[list[str]]) -> Iterator[list[Any]]:
    """Each line decoded (``None`` where it is not JSON), many lines per decoder call.

    A batch is decoded as one JSON array only when that must give line by line what
    decoding each line would: every line starts with ``{`` and no bracket occurs
    anywhere. Then a line cannot run on into the next (no string spans the newline put
    between lines; an object left open meets ``,{`` where a key must be: an error), and
    so, with as many values as lines, each value is one line. Otherwise the batch is
    decoded line by line.
    """
    for block in blocks:
        for start in range(0, len(block), _BATCH):
            yield _decode_batch(block[start : start + _BATCH])


def _decode_batch(batch: list[str]) -> list[Any]:
    text = "\n,".join(batch)
    if "[" not in text and "]" not in text and all(line[:1] == "{" for line in batch):
        try:
            values = decode(f"[{text}]")
        except ValueError:
            pass
        else:
            if len(values) == len(batch):
                return values  # type: ignore[no-any-return]
    out: list[Any] = []
    for line in batch:
        try:
            out.append(decode(line) if line else None)
        except ValueError:
            out.append(None)
    return out
