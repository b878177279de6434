"""Recordings made by real limiters on a manual clock, for the replay tests."""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.ops.record import Recorder
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import ruleset_from_data
from ratemw.testing import ManualClock

HASH_KEY = b"replay-tests-key"


def rules(
    limit: str = "8/hour", *, identity: str = "ip", extra: Iterable[Any] = ()
) -> dict[str, Any]:
    return {
        "identity": {"trusted_proxies": ["127.0.0.1/32"]},
        "rules": [
            {"name": "api", "match": {"path": "/api/**"}, "identity": identity, "limit": limit},
            *extra,
        ],
    }


def ruleset(data: Mapping[str, Any]) -> RuleSet:
    return ruleset_from_data(data)


def record(
    path: Path,
    data: Mapping[str, Any],
    requests: Iterable[tuple[float, RequestInfo]],
    **options: Any,
) -> list[int]:
    """Decide each (seconds after the previous, request) with a recording limiter;
    returns the statuses. The recorder flushes only when closed unless told otherwise."""
    options.setdefault("flush_seconds", 0)
    clock = ManualClock()
    recorder = Recorder(path, hash_key=HASH_KEY, **options)
    limiter = Limiter(data, clock=clock, record=recorder, operations={"interval_seconds": 0})
    statuses = []
    try:
        for pause, info in requests:
            clock.advance(pause)
            statuses.append(limiter.decide(info).status)
    finally:
        limiter.close()
    return statuses


def client(n: int, path: str = "/api/items", **fields: Any) -> RequestInfo:
    return RequestInfo(path=path, peer=f"192.0.2.{n}", **fields)


def all_bytes(path: Path) -> bytes:
    """The recording's files, rotated ones decompressed, concatenated."""
    out = b""
    for file in sorted(path.parent.glob(f"{path.name}*")):
        data = file.read_bytes()
        out += gzip.decompress(data) if file.suffix == ".gz" else data
    return out
