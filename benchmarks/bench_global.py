"""Global limits on Redis: accuracy and round trips across processes, and leased ``decide()``.

Run: ``make bench-global`` (or ``.venv/bin/python benchmarks/bench_global.py``); a
throwaway ``redis-server`` on a loopback port is started and stopped (``_redis.py``).

(a) Accuracy and cost. Four spawned processes share one Redis. Each offers, paced, the
same load to two keys at once (``--rate`` per key in total, default 1,000/s, for
``--seconds``, default 10):

* the **busy** key, rule ``100/second`` with burst 200 (a token bucket: the allowance
  over ``T`` seconds is ``B + R·T``, LEASES.md §8), offered ten times its rate;
* the **hammered** key, rule ``5/minute`` (strict mode: every grant is a Redis call),
  offered far over its limit.

Contenders, one after another in the same run on the same server with the same load:
ratemw (``Limiter(rules, redis_url=..., min_processes=4)``) and ``limits``
``RedisStorage`` with ``FixedWindowRateLimiter``, ``MovingWindowRateLimiter`` and
``SlidingWindowCounterRateLimiter`` (what Flask-Limiter and slowapi run), on the same
limits (``limits`` has no burst: ``100/second`` and ``5/minute``). Redis round trips are
top-level commands seen by ``MONITOR``, attributed to a key by its name; the process
registry (ratemw's heartbeats, per process, not per key) is counted apart. ``INFO``
``total_commands_processed`` is shown too: it also counts commands run inside scripts.

(b) ns per ``decide()`` on a leased key (one process, one hot key, every request
admitted, the lease live) beside the memory-only ``decide()`` with the same rule,
interleaved, best of several rounds.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import sys
import time
from collections.abc import Callable
from typing import Any

from _redis import RedisServer, Traffic, TrafficMeter, throwaway_redis
from ratemw import Limiter, RequestInfo

SPAWN = multiprocessing.get_context("spawn")
PROCESSES = 4
STRAND = 0.2  # f: at most f·B tokens sit in leases (LEASES.md §2)

BUSY_PATH, BUSY_PEER = "/api/items", "198.51.100.7"
HAMMERED_PATH, HAMMERED_PEER = "/login", "203.0.113.9"
BUSY_RATE, BUSY_BURST = 100.0, 200
HAMMERED_RATE, HAMMERED_BURST = 5 / 60, 5

RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        {"name": "busy", "match": {"path": BUSY_PATH}, "limit": "100/second", "burst": 200},
        {"name": "hammered", "match": {"path": HAMMERED_PATH}, "limit": "5/minute"},
    ],
}
PEER_LIMITS = {"busy": "100/second", "hammered": "5/minute"}
CONTENDERS = ("ratemw", "limits fixed window", "limits moving window", "limits sliding window")


def classify(line: bytes) -> str:
    """The key a top-level command touches (digests and SHAs are hex: no clash)."""
    if b"hammered" in line:
        return "hammered"
    if b"busy" in line:
        return "busy"
    if b"{meta}" in line:
        return "registry"
    return "other"


# -- (a) the worker processes ------------------------------------------------------------


Decide = Callable[[], bool]


def _deciders(contender: str, url: str) -> tuple[Decide, Decide, Callable[[], dict[str, int]]]:
    """(busy, hammered, close) for one contender in this process."""
    if contender == "ratemw":
        limiter = Limiter(RULES, redis_url=url, min_processes=PROCESSES)
        busy = RequestInfo(method="GET", path=BUSY_PATH, peer=BUSY_PEER)
        hammered = RequestInfo(method="POST", path=HAMMERED_PATH, peer=HAMMERED_PEER)
        decide = limiter.decide

        def close() -> dict[str, int]:
            engine = limiter.engine
            limiter.close()  # gives leftovers back: part of the cost
            return {"self_round_trips": engine.round_trips, "lease_calls": engine.lease_calls}

        return (lambda: decide(busy).allowed), (lambda: decide(hammered).allowed), close

    from limits import parse
    from limits.storage import RedisStorage
    from limits.strategies import (
        FixedWindowRateLimiter,
        MovingWindowRateLimiter,
        SlidingWindowCounterRateLimiter,
    )

    cls: Any = {
        "limits fixed window": FixedWindowRateLimiter,
        "limits moving window": MovingWindowRateLimiter,
        "limits sliding window": SlidingWindowCounterRateLimiter,
    }[contender]
    storage = RedisStorage(url)
    hit = cls(storage).hit
    busy_item, hammered_item = parse(PEER_LIMITS["busy"]), parse(PEER_LIMITS["hammered"])
    return (
        lambda: bool(hit(busy_item, "busy")),
        lambda: bool(hit(hammered_item, "hammered")),
        lambda: {},
    )


def _offer(spec: dict[str, Any], start_at: float, busy: Decide, hammered: Decide) -> dict[str, Any]:
    """Offer one decision per key every ``period`` seconds until the phase ends."""
    period = PROCESSES / spec["rate"]
    seconds = spec["seconds"]
    time.sleep(max(0.0, start_at - time.time()))
    first = time.time()
    start = time.monotonic()
    n = admitted_busy = admitted_hammered = 0
    while True:
        due = start + n * period
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)  # pacing the offered load
        if busy():
            admitted_busy += 1
        if hammered():
            admitted_hammered += 1
        n += 1
    return {"first": first, "last": time.time(), "attempts": n,
            "busy": admitted_busy, "hammered": admitted_hammered}  # fmt: skip


def worker(commands: Any, results: Any) -> None:
    """One process: for each phase, build the contender, report ready, offer load."""
    while True:
        spec = commands.get()
        if spec is None:
            return
        try:
            busy, hammered, close = _deciders(spec["contender"], spec["url"])
            results.put({"ready": True})
            start_at = commands.get()
            report = _offer(spec, start_at, busy, hammered)
            report.update(close())
            results.put(report)
        except BaseException as exc:  # the parent must hear about it rather than hang
            results.put({"error": repr(exc)})
            raise


class Pool:
    """Four spawned workers, reused for every phase."""

    def __init__(self) -> None:
        self.results: Any = SPAWN.Queue()
        self.commands: list[Any] = [SPAWN.Queue() for _ in range(PROCESSES)]
        self.procs = [
            SPAWN.Process(target=worker, args=(q, self.results), daemon=True) for q in self.commands
        ]
        for p in self.procs:
            p.start()

    def collect(self, timeout: float) -> list[dict[str, Any]]:
        reports = [self.results.get(timeout=timeout) for _ in self.procs]
        for r in reports:
            if "error" in r:
                raise RuntimeError(f"worker failed: {r['error']}")
        return reports

    def phase(
        self, meter: TrafficMeter, spec: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], Traffic]:
        meter.flush()
        for q in self.commands:
            q.put(spec)
        self.collect(timeout=60)  # built, nothing sent to Redis yet
        before = meter.snapshot()
        start_at = time.time() + 0.3
        for q in self.commands:
            q.put(start_at)
        reports = self.collect(timeout=spec["seconds"] + 60)
        return reports, meter.snapshot() - before

    def close(self) -> None:
        for q in self.commands:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)


def accuracy(server: RedisServer, seconds: float, rate: float, rounds: int) -> list[dict[str, Any]]:
    rows = []
    pool = Pool()
    try:
        with TrafficMeter(server, classify) as meter:
            for r in range(rounds):
                for contender in CONTENDERS:
                    spec = {"contender": contender, "url": server.url,
                            "rate": rate, "seconds": seconds}  # fmt: skip
                    reports, traffic = pool.phase(meter, spec)
                    rows.append(summarise(r + 1, contender, reports, traffic))
    finally:
        pool.close()
    return rows


def summarise(
    round_no: int, contender: str, reports: list[dict[str, Any]], traffic: Traffic
) -> dict[str, Any]:
    span = max(r["last"] for r in reports) - min(r["first"] for r in reports)
    attempts = sum(r["attempts"] for r in reports)
    return {
        "round": round_no,
        "contender": contender,
        "span": span,
        "attempts": attempts,  # per key
        "busy": sum(r["busy"] for r in reports),
        "hammered": sum(r["hammered"] for r in reports),
        "trips": traffic.round_trips,
        "all_trips": traffic.total_round_trips,
        "commands": traffic.commands,
        "self_round_trips": sum(r.get("self_round_trips", 0) for r in reports),
        "lease_calls": sum(r.get("lease_calls", 0) for r in reports),
    }


def print_accuracy(rows: list[dict[str, Any]], rate: float) -> list[bool]:
    """The tables of (a); returns the verdicts of the targets (True: meets)."""
    print()
    print(f"(a) {PROCESSES} processes, about {rate:,.0f} decisions/s offered to each key")
    print()
    print("busy key: 100/second, burst 200 (limits: 100/second); admitted vs B + R·T ± f·B")
    print(
        f"{'rnd':>3} {'contender':<22} {'offered/s':>9} {'admitted':>8} {'B+R·T':>7}"
        f" {'diff':>6} {'±f·B':>5} {'RT key':>7} {'RT/1000 dec':>11} {'RT/admitted':>11}"
    )
    for row in rows:
        attempts, admitted, trips = row["attempts"], row["busy"], row["trips"].get("busy", 0)
        allowance = BUSY_BURST + BUSY_RATE * row["span"]
        ours = row["contender"] == "ratemw"
        shown = f"{allowance:>7.0f} {admitted - allowance:>+6.0f} {STRAND * BUSY_BURST:>5.0f}"
        if not ours:  # limits has no burst: no token-bucket allowance to compare with
            shown = f"{'-':>7} {'':>6} {'':>5}"
        print(
            f"{row['round']:>3} {row['contender']:<22} {attempts / row['span']:>9,.0f}"
            f" {admitted:>8,} {shown}"
            f" {trips:>7,} {1000 * trips / attempts:>11.1f} {trips / max(1, admitted):>11.3f}"
        )
    print()
    print("hammered key: 5/minute (burst 5), offered far over its limit")
    print(
        f"{'rnd':>3} {'contender':<22} {'offered/s':>9} {'admitted':>8} {'B+R·T':>7}"
        f" {'rejected':>8} {'RT key':>7} {'RT/100 rejected':>15}"
    )
    for row in rows:
        attempts, admitted = row["attempts"], row["hammered"]
        trips = row["trips"].get("hammered", 0)
        rejected = attempts - admitted
        allowance = HAMMERED_BURST + HAMMERED_RATE * row["span"]
        print(
            f"{row['round']:>3} {row['contender']:<22} {attempts / row['span']:>9,.0f}"
            f" {admitted:>8,} {allowance:>7.1f} {rejected:>8,} {trips:>7,}"
            f" {100 * trips / max(1, rejected):>15.2f}"
        )
    print()
    print("all traffic of the phase (both keys): round trips by kind, and INFO commands")
    print("(registry: ratemw's heartbeats; other: script loads)")
    print(
        f"{'rnd':>3} {'contender':<22} {'registry':>8} {'other':>6} {'all RT':>7}"
        f" {'all RT/s':>8} {'INFO cmds':>9} {'cmds/RT':>7} {'self-count':>10} {'takes':>6}"
    )
    for row in rows:
        ours = row["contender"] == "ratemw"
        own = f"{row['self_round_trips']:>10,} {row['lease_calls']:>6,}" if ours else ""
        print(
            f"{row['round']:>3} {row['contender']:<22} {row['trips'].get('registry', 0):>8,}"
            f" {row['trips'].get('other', 0):>6,} {row['all_trips']:>7,}"
            f" {row['all_trips'] / row['span']:>8.1f} {row['commands']:>9,}"
            f" {row['commands'] / max(1, row['all_trips']):>7.2f} {own}"
        )

    verdicts = []
    print()
    print("targets (issue #3 item 8):")
    for row in rows:
        if row["contender"] != "ratemw":
            continue
        attempts, span = row["attempts"], row["span"]
        busy_per_1000 = 1000 * row["trips"].get("busy", 0) / attempts
        with_registry = 1000 * (row["trips"].get("busy", 0) + row["trips"].get("registry", 0))
        with_registry /= attempts
        rejected = attempts - row["hammered"]
        per_100 = 100 * row["trips"].get("hammered", 0) / max(1, rejected)
        diff = row["busy"] - (BUSY_BURST + BUSY_RATE * span)
        hammered_diff = row["hammered"] - (HAMMERED_BURST + HAMMERED_RATE * span)
        checks = [
            (f"busy key <= 20 RT per 1,000 decisions: {busy_per_1000:.1f}"
             f" ({with_registry:.1f} counting all heartbeats)", busy_per_1000 <= 20),
            (f"hammered key <= 1 RT per 100 rejected: {per_100:.2f}", per_100 <= 1),
            (f"busy admitted within B + R·T ± f·B: {diff:+.0f} of ±{STRAND * BUSY_BURST:.0f}",
             abs(diff) <= STRAND * BUSY_BURST),
            (f"hammered admitted within B + R·T ± f·B: {hammered_diff:+.1f}"
             f" of ±{STRAND * HAMMERED_BURST:.0f}", abs(hammered_diff) <= STRAND * HAMMERED_BURST),
        ]  # fmt: skip
        for text, ok in checks:
            verdicts.append(ok)
            print(f"  round {row['round']}: {text}: {'meets' if ok else 'MISSES'}")
    peers = [row for row in rows if row["contender"] != "ratemw"]
    if peers:
        per_1000 = [1000 * row["trips"].get("busy", 0) / row["attempts"] for row in peers]
        print(f"  (peers: {min(per_1000):,.1f} to {max(per_1000):,.1f} RT per 1,000 decisions)")
    return verdicts


# -- (b) ns per decide() on a leased key -------------------------------------------------

ALLOW_ALL: dict[str, Any] = {
    "version": 1,
    "rules": [{"name": "hot", "match": {"path": BUSY_PATH}, "limit": "1000000000/second"}],
}


def timed(call: Callable[[RequestInfo], Any], info: RequestInfo, calls: int) -> float:
    """ns per call over ``calls`` calls."""
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for _ in range(calls):
            call(info)
        return (time.perf_counter_ns() - start) / calls
    finally:
        gc.enable()


def leased_decide(server: RedisServer, calls: int, rounds: int) -> dict[str, Any]:
    info = RequestInfo(method="GET", path=BUSY_PATH, peer=BUSY_PEER)
    memory = Limiter(ALLOW_ALL)
    leased = Limiter(ALLOW_ALL, redis_url=server.url)
    try:
        # Warm up: the first lease is small; the admit rate it follows grows within 1 s.
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            timed(leased.decide, info, 10_000)
        timed(memory.decide, info, calls)
        best = {"memory": float("inf"), "leased": float("inf")}
        engine = leased.engine
        trips, takes = engine.round_trips, engine.lease_calls
        denied = 0
        for _ in range(rounds):
            best["memory"] = min(best["memory"], timed(memory.decide, info, calls))
            best["leased"] = min(best["leased"], timed(leased.decide, info, calls))
        denied = sum(not leased.decide(info).allowed for _ in range(1000))
        return {
            **best,
            "calls": calls * rounds,
            "round_trips": engine.round_trips - trips,
            "takes": engine.lease_calls - takes,
            "denied": denied,
        }
    finally:
        leased.close()
        memory.close()


def print_leased(result: dict[str, Any], calls: int, rounds: int) -> bool:
    print()
    print(f"(b) ns per decide(), one process, hot key, every call admitted;"
          f" best of {rounds} interleaved rounds of {calls:,} calls")  # fmt: skip
    print(f"{'contender':<28} {'ns/call':>8} {'x memory':>8}")
    mem, leased = result["memory"], result["leased"]
    print(f"{'ratemw decide(), memory':<28} {mem:>8.0f} {1.0:>8.2f}")
    print(f"{'ratemw decide(), leased':<28} {leased:>8.0f} {leased / mem:>8.2f}")
    print(
        f"  during the timed rounds: {result['round_trips']:,} Redis round trips"
        f" ({result['takes']:,} lease takes) for {result['calls']:,} decisions;"
        f" {result['denied']} of 1,000 after them denied"
    )
    ok = bool(leased / mem <= 1.5)
    print(f"target: leased decide() <= 1.50 x memory-only: {leased / mem:.2f}:"
          f" {'meets' if ok else 'MISSES'}")  # fmt: skip
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase of (a)")
    parser.add_argument("--rate", type=float, default=1000.0, help="decisions/s offered per key")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (a)")
    parser.add_argument("--calls", type=int, default=200_000, help="calls per round of (b)")
    parser.add_argument("--decide-rounds", type=int, default=7, help="rounds of (b)")
    parser.add_argument("--skip-accuracy", action="store_true", help="run (b) only")
    args = parser.parse_args()

    with throwaway_redis() as server:
        print(
            f"Python {sys.version.split()[0]}; redis-server {server.version()} on loopback;"
            f" {PROCESSES} spawned processes; {args.seconds:g} s per phase"
        )
        if not args.skip_accuracy:
            rows = accuracy(server, args.seconds, args.rate, args.rounds)
            print_accuracy(rows, args.rate)
        result = leased_decide(server, args.calls, args.decide_rounds)
        print_leased(result, args.calls, args.decide_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
