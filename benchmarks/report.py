"""The benchmark report: every contender in one run, tables and plots into docs/benchmarks.md.

Run: ``make bench-report`` (or ``.venv/bin/python benchmarks/report.py``). Measures with
the benchmark scripts' own functions (``report_measure.py``), with fewer calls than the
scripts' defaults for ``decide()`` and shorter phases for the process sweep, so the run
stays within minutes; a throwaway ``redis-server`` on a loopback port is started and
stopped (``_redis.py``). Writes the section between the ``report:start`` and
``report:end`` markers of docs/benchmarks.md and ``docs/img/bench-*.png``; the rest of
the page is left as it is. ``--json FILE`` keeps the raw figures; ``--from-json FILE``
renders them again without measuring.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import report_measure as rm
    from _redis import throwaway_redis

    started = time.monotonic()
    data: dict[str, Any] = {}
    with throwaway_redis() as server:
        data["machine"] = rm.machine(server.version())
        _step("decide() beside the other limiters")
        data["decide"] = {"calls": args.calls, "rounds": args.rounds,
                          "results": rm.decide_ns(args.calls, args.rounds)}  # fmt: skip
        _step("frameworks")
        data["frameworks"] = {
            "calls": args.requests, "rounds": args.rounds, "warmup": args.warmup,
            "results": rm.frameworks(server.url, args.requests, args.rounds, args.warmup),
        }  # fmt: skip
        _step("Redis round trips, 1 to 8 processes")
        trips = rm.round_trips(server, (1, 2, 4, 8), args.seconds, args.rate)
        data["global"] = {"seconds": args.seconds, "rate": args.rate, "results": trips}
        _step("Redis outage")
        data["outage"] = rm.outage(server, 3.0, args.outage_seconds, 4.0, args.rate, 4)
    _step("memory against live keys")
    keys = [1_000, 10_000, 100_000]
    data["memory"] = {"keys": keys, "results": rm.memory(keys)}
    data["seconds"] = time.monotonic() - started
    return data


def _step(what: str) -> None:
    print(f"bench-report: {what}", file=sys.stderr, flush=True)


def write(data: dict[str, Any], doc: Path, img_dir: Path) -> list[Path]:
    """Render ``data``: the plots into ``img_dir`` and the section of ``doc``."""
    from report_markdown import markdown
    from report_render import replace_section, write_plots

    plots = write_plots(data, img_dir)
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Benchmarks\n"
    doc.write_text(replace_section(text, markdown(data)), encoding="utf-8")
    return plots


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=50_000, help="decide() calls per round")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--requests", type=int, default=2_000, help="requests per round")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds per framework variant")
    parser.add_argument("--seconds", type=float, default=4.0, help="phase of the process sweep")
    parser.add_argument("--rate", type=float, default=1000.0, help="decisions/s offered per key")
    parser.add_argument("--outage-seconds", type=float, default=4.0, help="Redis paused for")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    parser.add_argument("--from-json", type=Path, help="render these figures; measure nothing")
    args = parser.parse_args()
    if args.from_json:
        data = json.loads(args.from_json.read_text(encoding="utf-8"))
    else:
        data = measure(args)
    if args.json:
        args.json.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    for path in write(data, args.doc, args.img_dir):
        print(f"wrote {path}")
    print(f"wrote {args.doc} (the report section)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
