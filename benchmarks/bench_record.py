"""What recording costs ``decide()``: ns per decision with recording off and with a
100 % sample, in the same run, as a ratio (budget for the hot path: at most 1.10,
issue #14); and, beside it, what the recorder's flush thread spends per arrival.

Run: ``.venv/bin/python benchmarks/bench_record.py [--check]``.

Both limiters decide the same requests (the fast path: one rule, identity ``ip``),
interleaved chunk by chunk; each chunk's ratio is of two runs back to back, and the
median ratio is reported (steadier than a ratio of two bests when the machine drifts).
Between chunks, untimed, the recorder writes what it buffered (encoding, digests, the
file), as its thread does every ``flush_seconds``: a chunk is the buffer a 0.5 s flush
interval holds at 20,000 decisions a second. That flush is timed on its own and
reported per arrival: it runs off the request, in the recorder's thread, but on a
saturated CPU it is the larger part of what recording costs (docs/replay.md).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.ops.record import Recorder

PATH = "/api/items"
BUDGET = 1.10


def rules() -> dict[str, Any]:
    return {
        "version": 1,
        "rules": [{"name": "api", "match": {"path": PATH}, "limit": "1000000000/second"}],
    }


def requests(n: int) -> list[RequestInfo]:
    return [RequestInfo(path=PATH, peer=f"10.0.{i >> 8 & 255}.{i & 255}") for i in range(n)]


def timed(limiter: Limiter, infos: list[RequestInfo]) -> float:
    decide = limiter.decide
    started = time.perf_counter_ns()
    for info in infos:
        decide(info)
    return (time.perf_counter_ns() - started) / len(infos)


def run(calls: int, rounds: int, chunk: int) -> dict[str, float]:
    infos = requests(1000) * (chunk // 1000)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = Recorder(Path(tmp) / "rec.jsonl", flush_seconds=0, buffer_size=chunk)
        off = Limiter(rules(), operations={"interval_seconds": 0})
        on = Limiter(rules(), operations={"interval_seconds": 0}, record=recorder)
        best_off = best_on = best_flush = float("inf")
        ratios = []
        try:
            for _ in range(rounds * max(1, calls // chunk)):
                a = timed(off, infos)
                b = timed(on, infos)
                started = time.perf_counter_ns()
                written = recorder.flush()
                flush = (time.perf_counter_ns() - started) / len(infos)
                assert written >= len(infos)
                best_off, best_on = min(best_off, a), min(best_on, b)
                best_flush = min(best_flush, flush)
                ratios.append(b / a)
        finally:
            off.close()
            on.close()
    return {
        "decide_ns_recording_off": round(best_off, 1),
        "decide_ns_recording_100pct": round(best_on, 1),
        "ratio_median": round(statistics.median(ratios), 3),
        "flush_ns_per_arrival": round(best_flush, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=10_000, help="decisions per flush")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {BUDGET}")
    args = parser.parse_args()
    result = run(args.calls, args.rounds, args.chunk)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, value in result.items():
            print(f"{name:30} {value}")
        print(f"{'budget':30} {BUDGET}")
    return 1 if args.check and result["ratio_median"] > BUDGET else 0


if __name__ == "__main__":
    sys.exit(main())
