"""How fast a what-if preview replays: ``ratemw.replay.preview`` end to end (read the
files, the baseline replay, the self-check, the candidate replay, the report) over a
recording of N arrivals (default 1,000,000; budget 15 s on the 2-core development
machine, issue #14).

Run: ``.venv/bin/python benchmarks/bench_replay.py [--arrivals N] [--check] [--json]
[--profile]``.

The recording is made the way production makes one: a real ``Limiter`` decides
synthetic traffic on a manual clock and a real ``Recorder`` writes it (so the lines are
the recorder's own format, verdicts included, and the self-check has something true to
reproduce). It is cached in the system's temporary directory by its size, so that only
the first run pays for it; the cached file is checked to be a complete recording first.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.ops.record import Recorder
from ratemw.replay import preview
from ratemw.replay.reader import files_of, read_recording
from ratemw.rules.parse import ruleset_from_data
from ratemw.testing import ManualClock

BUDGET_SECONDS = 15.0
HASH_KEY = b"bench-replay"
#: distinct clients: API keys (search, by api_key) and addresses (api, by ip)
KEYS, ADDRESSES = 2_000, 5_000


def rules(search_free: str) -> dict[str, Any]:
    """The worked example of docs/replay.md; the candidate halves search's free tier."""
    return {
        "tiers": ["free", "pro"],
        "rules": [
            {"name": "search", "match": {"path": "/search"}, "identity": "api_key",
             "limit": {"free": search_free, "pro": "300/minute"}},
            {"name": "api", "match": {"path": "/api/**"}, "identity": "ip",
             "limit": "120/minute"},
            {"name": "export", "match": {"path": "/export"}, "identity": "api_key",
             "limit": "5/hour"},
        ],
    }  # fmt: skip


def _traffic(n: int) -> list[RequestInfo]:
    """A repeating mix: 40 % search (a tenth of the keys pro), 55 % api, 5 % export."""
    out = []
    for i in range(n):
        k = (i * 7919) % KEYS
        tier = "pro" if k % 10 == 0 else "free"
        if i % 20 < 8:
            out.append(RequestInfo(path="/search", peer="10.1.0.1", api_key=f"k{k}", tier=tier))
        elif i % 20 < 19:
            a = (i * 104_729) % ADDRESSES
            out.append(RequestInfo(path=f"/api/items/{i % 50}", peer=f"10.2.{a >> 8}.{a & 255}"))
        else:
            out.append(RequestInfo(path="/export", peer="10.1.0.2", api_key=f"k{k}", tier=tier))
    return out


def make_recording(path: Path, arrivals: int) -> None:
    """Record ``arrivals`` decisions (2,000 a second of manual time) with a real limiter."""
    clock = ManualClock()
    recorder = Recorder(
        path, hash_key=HASH_KEY, flush_seconds=0, buffer_size=100_000, max_bytes=2**40, keep=0
    )
    limiter = Limiter(
        rules("30/minute"), clock=clock, record=recorder, operations={"interval_seconds": 0}
    )
    try:
        chunk = _traffic(50_000)
        done = 0
        while done < arrivals:
            for info in chunk[: arrivals - done]:
                clock.advance(0.0005)
                limiter.decide(info)
            done += min(len(chunk), arrivals - done)
            recorder.flush()
    finally:
        limiter.close()


def recording(arrivals: int) -> Path:
    path = Path(tempfile.gettempdir()) / f"ratemw-bench-replay-{arrivals}.jsonl"
    if path.exists():
        try:
            if len(read_recording(files_of(path)).arrivals) == arrivals:
                return path
        except Exception:  # damaged or partial: made again below
            pass
        path.unlink()
    print(f"recording {arrivals} arrivals to {path} (once) ...", file=sys.stderr)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    make_recording(partial, arrivals)
    partial.replace(path)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arrivals", type=int, default=1_000_000)
    parser.add_argument("--check", action="store_true", help=f"exit 1 above {BUDGET_SECONDS} s")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile", action="store_true", help="cProfile: the top 25 by tottime")
    args = parser.parse_args()
    if not 1_000 <= args.arrivals <= 5_000_000:
        parser.error("--arrivals: 1,000 .. 5,000,000")
    path = recording(args.arrivals)
    baseline = ruleset_from_data(rules("30/minute"))
    candidate = ruleset_from_data(rules("15/minute"))
    profile = cProfile.Profile() if args.profile else None
    started = time.perf_counter()
    if profile is not None:
        profile.enable()
    result = preview(candidate, path, baseline)
    if profile is not None:
        profile.disable()
    seconds = time.perf_counter() - started
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    report = result.report
    out = {
        "arrivals": report["recording"]["arrivals"],
        "seconds": round(seconds, 3),
        "per_million": round(seconds * 1_000_000 / args.arrivals, 3),
        "budget_per_million": BUDGET_SECONDS,
        "self_check_ok": result.ok,
        "flips": report.get("flips", {}).get("total"),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(
            f"replay: {out['arrivals']} arrivals in {seconds:.2f} s "
            f"({out['per_million']:.2f} s per million, budget {BUDGET_SECONDS:g} s); "
            f"self-check {'ok' if result.ok else 'REFUSED'}, {out['flips']} flips"
        )
    if not result.ok:
        print("error: the self-check refused the benchmark's own recording", file=sys.stderr)
        return 1
    return 1 if args.check and out["per_million"] > BUDGET_SECONDS else 0


if __name__ == "__main__":
    sys.exit(main())
