"""The markdown of docs/benchmarks.md's generated report, from ``report_measure``'s data."""

from __future__ import annotations

from typing import Any

from report_render import (
    COMMAND,
    FRAMEWORK_PEERS,
    MEMORY_NAMES,
    machine_line,
    outage_bound,
    versions_line,
)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    right = ["---:" if i else "---" for i in range(len(header))]
    return [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(right) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _decide(data: dict[str, Any]) -> list[str]:
    d = data["decide"]
    rows = []
    for sc, results in d["results"].items():
        floor = results["dict bucket (floor)"]
        ours = results["ratemw decide()"]
        for name, ns in results.items():
            rows.append([sc, name, f"{ns:,.0f}", f"{ns / floor:.2f}", f"{ns / ours:.2f}"])
    return [
        "### decide() beside the other Python limiters",
        "",
        f"Best of {d['rounds']} interleaved rounds of {d['calls']:,} calls, one process, each"
        " limiter in memory (`bench_decide.py`'s timer and contenders, plus PyrateLimiter's"
        " `InMemoryBucket` and throttled-py's token bucket on its `MemoryStore`).",
        "",
        *_table(["scenario", "contender", "ns/call", "x floor", "x ratemw"], rows),
        "",
        "![decide() ns per call](img/bench-decide.png)",
    ]


def _frameworks(data: dict[str, Any]) -> list[str]:
    f = data["frameworks"]
    rows = []
    for fw, best in f["results"].items():
        base = best["baseline"]
        floor = (best["hand-written"] - base) / 1000
        for v, ns in best.items():
            added = (ns - base) / 1000
            x = ""
            if v != "baseline":  # "-": the floor or this within noise of the baseline
                x = f"{added / floor:.1f}" if floor > 0 and added > 0 else "-"
            name = v.replace("peer", FRAMEWORK_PEERS.get(fw, "peer"))
            rows.append([fw, name, f"{ns / 1000:.1f}", f"{added:+.1f}", x])
    return [
        "### Added µs per request, per framework",
        "",
        f"Best of {f['rounds']} interleaved rounds of {f['calls']:,} in-process requests after"
        f" {f['warmup']:g} s of warm-up per variant (`bench_frameworks.py`'s `measure`);"
        " `hand-written` is the floor, `x floor` is added µs ÷ the hand-written middleware's."
        " A negative added µs is within the noise of the baseline in this run.",
        "",
        *_table(["framework", "variant", "µs/request", "added µs", "x floor"], rows),
        "",
        "![added µs per request per framework](img/bench-frameworks.png)",
    ]


def _global(data: dict[str, Any]) -> list[str]:
    g = data["global"]
    results = g["results"]
    counts = sorted(next(iter(results.values())), key=int)
    rows = [
        [n, *(f"{results[c][n]['round_trips']:,.1f} ({results[c][n]['commands']:,.1f})"
              for c in results)]
        for n in counts
    ]  # fmt: skip
    return [
        "### Redis round trips per 1,000 decisions, as processes grow",
        "",
        f"`bench_global.py`'s workers and counters: N spawned processes share one Redis and"
        f" together offer {g['rate']:,.0f} decisions/s to each of its two keys (busy:"
        f" `100/second` burst 200; hammered: `5/minute`) for {g['seconds']:g} s; round trips"
        " counted in the clients (a pipeline is one), top-level commands in parentheses.",
        "",
        *_table(["processes", *results], rows),
        "",
        "![Redis round trips per 1,000 decisions](img/bench-round-trips.png)",
    ]


def _outage(data: dict[str, Any]) -> list[str]:
    o = data["outage"]
    t0, t1, times = o["down_from"], o["down_to"], o["admitted"]
    before = sum(t <= t0 for t in times)
    during = sum(t0 < t <= t1 for t in times)
    phases = [
        ["before", f"0-{t0:.1f}", f"{before:,}", f"{outage_bound(o, t0):,.0f}"],
        ["Redis paused", f"{t0:.1f}-{t1:.1f}", f"{during:,}",
         f"{outage_bound(o, t1) - outage_bound(o, t0):,.0f}"],
        ["after", f"{t1:.1f}-{o['end']:.1f}", f"{len(times) - before - during:,}",
         f"{outage_bound(o, o['end']) - outage_bound(o, t1):,.0f}"],
        ["whole run", f"0-{o['end']:.1f}", f"{len(times):,}",
         f"{outage_bound(o, o['end']):,.0f}"],
    ]  # fmt: skip
    worst = max((i + 1 - outage_bound(o, t) for i, t in enumerate(times)), default=0.0)
    verdict = "within the bound" if worst <= 0 else f"OVER the bound by {worst:,.0f}"
    return [
        "### Admitted against the global bound during a Redis outage",
        "",
        f"{o['processes']} limiters (each its own lease engine, `min_processes="
        f"{o['processes']}`) take turns on {o['offered']:,} decisions paced over"
        f" {o['end']:g} s, on `bench_global.py`'s busy rule; the server is SIGSTOPped for"
        f' {t1 - t0:.1f} s. Bound (docs/global.md, "Bounds"): `B + R·Δ + f·B` in an'
        " interval without an outage, `f·B + R·T_L + P·max(1, B/P_exp) + (P/P_exp)·R·D`"
        f" during one. At every admitted decision the cumulative count was {verdict}.",
        "",
        *_table(["phase", "seconds", "admitted", "bound"], phases),
        "",
        "![admitted through a Redis outage](img/bench-outage.png)",
    ]


def _memory(data: dict[str, Any]) -> list[str]:
    m = data["memory"]
    names = list(m["results"])
    rows = [
        [f"{n:,}", *(f"{m['results'][w][i]:.1f}" for w in names)] for i, n in enumerate(m["keys"])
    ]
    return [
        "### Memory against live keys",
        "",
        "Resident-set growth (MiB) of a fresh child process after N distinct keys were"
        " decided once each (`bench_decide.py`'s `memory`).",
        "",
        *_table(["live keys", *(MEMORY_NAMES.get(w, w) for w in names)], rows),
        "",
        "![memory against live keys](img/bench-memory.png)",
    ]


def markdown(data: dict[str, Any]) -> str:
    """The report section (without its markers)."""
    m = data["machine"]
    every = tuple(m["versions"])
    lines = [
        "## Report",
        "",
        f"Generated by `{COMMAND}` (`benchmarks/report.py`) on {m['date']} in"
        f" {data.get('seconds', 0):.0f} s; do not edit by hand. Machine: {machine_line(data)}."
        f" Versions: {versions_line(data, every)}. Each plot states the same.",
    ]
    for part, render in (
        ("decide", _decide),
        ("frameworks", _frameworks),
        ("global", _global),
        ("outage", _outage),
        ("memory", _memory),
    ):
        if part in data:
            lines += ["", *render(data)]
    return "\n".join(lines) + "\n"
