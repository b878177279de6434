"""The measurements of ``make bench-report``, over the benchmark scripts' own functions.

Each function returns plain data (JSON-able) for ``report_render.py``: ``decide()`` beside
the dict floor and the other Python limiters, added µs per framework request, Redis round
trips as processes grow, admitted decisions through a Redis outage, memory per live keys.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import bench_decide
import bench_frameworks
import bench_global
from _redis import RedisServer, TrafficMeter
from ratemw import Limiter, RequestInfo

#: the distributions whose versions each plot states
VERSIONS = (
    "ratemw", "limits", "pyrate-limiter", "throttled-py", "flask", "flask-limiter",
    "starlette", "slowapi", "django", "django-ratelimit", "redis",
)  # fmt: skip


def machine(redis_version: str) -> dict[str, Any]:
    """Cores, CPU model (``/proc/cpuinfo``), Python and the versions of every contender."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.partition(":")[2].strip()
                    break
    except OSError:
        pass  # not Linux: the platform's own name stands
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["redis-server"] = redis_version
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "python": sys.version.split()[0],
        "system": f"{platform.system()} {platform.release()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "versions": versions,
    }


# -- decide() beside the other Python limiters --------------------------------------------


def _pyrate(per_second: float) -> Callable[[str], bool]:
    from pyrate_limiter import Duration, InMemoryBucket, Rate
    from pyrate_limiter import Limiter as PyrateLimiter

    rate = Rate(1, Duration.DAY) if per_second < 1 else Rate(int(per_second), Duration.SECOND)
    acquire = PyrateLimiter(InMemoryBucket([rate])).try_acquire
    return lambda key: bool(acquire(key, blocking=False))


def _throttled(per_second: float) -> Callable[[str], bool]:
    from throttled import MemoryStore, Throttled, rate_limiter

    quota = (
        rate_limiter.per_day(1, burst=1)
        if per_second < 1
        else rate_limiter.per_sec(int(per_second), burst=int(per_second))
    )
    limit = Throttled(using="token_bucket", quota=quota, store=MemoryStore()).limit
    return lambda key: not limit(key).limited


def decide_contenders(
    limit: str, per_second: float
) -> dict[str, tuple[Callable[[Any], Any], bool]]:
    """name -> (call, takes a RequestInfo); the peers in their documented in-memory set-up."""
    burst = per_second if per_second >= 1 else 1.0
    return {
        "dict bucket (floor)": (bench_decide.dict_bucket(per_second, burst), False),
        "ratemw decide()": (Limiter(bench_decide.rules(limit)).decide, True),
        "limits fixed window": (bench_decide.limits_hitter("fixed", limit), False),
        "limits sliding window": (bench_decide.limits_hitter("sliding", limit), False),
        "PyrateLimiter (in memory)": (_pyrate(per_second), False),
        "throttled-py token bucket": (_throttled(per_second), False),
    }


def decide_ns(calls: int, rounds: int) -> dict[str, dict[str, float]]:
    """scenario -> contender -> best ns per call, interleaved rounds (bench_decide's timer)."""
    out: dict[str, dict[str, float]] = {}
    key = bench_decide.HOT_IP
    info = RequestInfo(method="GET", path=bench_decide.PATH, peer=key)
    for scenario, limit, per_second in (
        ("hot key, admitted", "1000000000/second", 1e9),
        ("hot key, rejected", "1/day", 1 / 86400),
    ):
        cands = decide_contenders(limit, per_second)
        best = dict.fromkeys(cands, float("inf"))
        for call, wants_info in cands.values():  # warm up; a rejected key is spent here
            bench_decide.timed(call, [info] if wants_info else [key], 1000)
        for _ in range(rounds):
            for name, (call, wants_info) in cands.items():
                ns = bench_decide.timed(call, [info] if wants_info else [key], calls)
                best[name] = min(best[name], ns)
        out[scenario] = best
    return out


# -- the frameworks, Redis round trips, the outage, memory -------------------------------


def frameworks(url: str, calls: int, rounds: int, warmup: float) -> dict[str, dict[str, float]]:
    """framework -> variant -> best ns per request (``bench_frameworks.measure``)."""
    out = {}
    for fw in bench_frameworks.FRAMEWORKS:
        best, failed = bench_frameworks.measure(fw, url, calls, rounds, warmup)
        if failed:
            print(f"warning: {fw}: {failed:,} requests were not answered 200", file=sys.stderr)
        out[fw] = best
    return out


def round_trips(
    server: RedisServer, counts: Sequence[int], seconds: float, rate: float
) -> dict[str, dict[str, dict[str, float]]]:
    """contender -> processes -> Redis round trips and commands per 1,000 decisions.

    ``bench_global``'s workers, pool and counters, with ``counts`` processes sharing the
    same offered load (``rate`` decisions/s per key in total) for ``seconds`` a phase.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    with TrafficMeter(server, bench_global.classify) as meter:
        for n in counts:
            pool = bench_global.Pool(n)
            try:
                for contender in ("ratemw", "limits fixed window"):
                    spec = {"contender": contender, "url": server.url, "rate": rate,
                            "seconds": seconds, "processes": n}  # fmt: skip
                    reports, traffic = pool.phase(meter, spec)
                    row = bench_global.summarise(1, contender, reports, traffic)
                    decisions = 2 * row["attempts"]  # two keys per attempt
                    trips = sum(t for t, _ in row["round_trips"].values())
                    out.setdefault(contender, {})[str(n)] = {
                        "round_trips": 1000 * trips / decisions,
                        "commands": 1000 * traffic.total_commands / decisions,
                    }
            finally:
                pool.close()
    return out


def outage(
    server: RedisServer, before: float, down: float, after: float, rate: float, processes: int
) -> dict[str, Any]:
    """Admitted decisions of the busy rule (``bench_global``) while Redis is paused.

    ``processes`` limiters (each its own lease engine, as a worker process would have) take
    turns on one paced stream of ``rate`` decisions/s; ``server`` is SIGSTOPped for
    ``down`` seconds after ``before`` and resumed for ``after``.
    """
    limiters = [
        Limiter(bench_global.RULES, redis_url=server.url, min_processes=processes)
        for _ in range(processes)
    ]
    info = RequestInfo(method="GET", path=bench_global.BUSY_PATH, peer=bench_global.BUSY_PEER)
    admitted: list[float] = []
    offered = 0
    period = 1 / rate
    paused_at = resumed_at = 0.0
    start = time.monotonic()
    try:
        while (now := time.monotonic() - start) < before + down + after:
            if not paused_at and now >= before:
                server.pause()
                paused_at = time.monotonic() - start
            elif paused_at and not resumed_at and now >= before + down:
                server.resume()
                resumed_at = time.monotonic() - start
            due = offered * period
            if due > now:
                time.sleep(due - now)  # pacing the offered load
            if limiters[offered % processes].decide(info).allowed:
                admitted.append(round(time.monotonic() - start, 4))
            offered += 1
    finally:
        server.resume()
        for limiter in limiters:
            limiter.close()
    return {
        "offered": offered,
        "admitted": admitted,
        "down_from": paused_at,
        "down_to": resumed_at or paused_at,
        "end": before + down + after,
        "rate": bench_global.BUSY_RATE,
        "burst": bench_global.BUSY_BURST,
        "strand": bench_global.STRAND,
        "lease_seconds": min(5 * 0.2, bench_global.BUSY_BURST / bench_global.BUSY_RATE),
        "processes": processes,
    }


def memory(keys: Sequence[int]) -> dict[str, list[float]]:
    """contender -> MiB of resident-set growth per entry of ``keys`` (``bench_decide``)."""
    out: dict[str, list[float]] = {}
    for n in keys:
        for which, mib in bench_decide.memory(n).items():
            out.setdefault(which, []).append(mib)
    return out
