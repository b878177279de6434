"""The generated part of docs/benchmarks.md: markdown tables and PNG plots from plain data.

``report.py`` measures; this module only renders what it is given (``report_measure``'s
shapes), so a test can render a small fixed input. Plots use matplotlib's Agg backend.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

START, END = "<!-- report:start -->", "<!-- report:end -->"
COMMAND = "make bench-report"
FRAMEWORK_PEERS = {"flask": "Flask-Limiter", "starlette": "slowapi", "django": "django-ratelimit"}
MEMORY_NAMES = {
    "floor": "dict bucket (floor)",
    "ratemw": "ratemw decide()",
    "fixed": "limits fixed window",
    "sliding": "limits sliding window",
}


def replace_section(document: str, generated: str) -> str:
    """``document`` with the text between the markers replaced (markers appended if absent).

    A marker counts only on a line of its own, so prose that quotes one is left alone.
    """
    block = f"{START}\n{generated.strip()}\n{END}"
    lines = document.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.strip() == START]
    if not starts:
        return f"{document.rstrip()}\n\n{block}\n"
    ends = [i for i, line in enumerate(lines) if line.strip() == END and i > starts[0]]
    if not ends:
        raise ValueError(f"{START} without {END}")
    head, tail = "".join(lines[: starts[0]]), "".join(lines[ends[0] + 1 :])
    return f"{head}{block}\n{tail}"


def machine_line(data: dict[str, Any]) -> str:
    m = data["machine"]
    return f"{m['cores']} cores, {m['cpu']}; {m['system']}; Python {m['python']}"


def versions_line(data: dict[str, Any], names: tuple[str, ...]) -> str:
    v = data["machine"]["versions"]
    return ", ".join(f"{n} {v.get(n, '?')}" for n in names)


# -- plots --------------------------------------------------------------------------------


def _figure(title: str) -> tuple[Any, Any]:
    try:
        import matplotlib
    except ImportError as exc:
        raise SystemExit("the plots need matplotlib: the `plots` dependency group") from exc
    matplotlib.use("Agg")  # files only: no display on a build machine
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.2), layout="constrained")
    ax.set_title(title)
    return fig, ax


def _save(fig: Any, path: Path, data: dict[str, Any], names: tuple[str, ...]) -> Path:
    import matplotlib.pyplot as plt

    footer = (
        f"{machine_line(data)}; {data['machine']['date']}\n"
        f"{versions_line(data, names)}\nreproduce: {COMMAND}"
    )
    fig.get_layout_engine().set(h_pad=0.15)
    fig.supxlabel(footer, fontsize=7, color="0.3", x=0.01, ha="left")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_decide(data: dict[str, Any], path: Path) -> Path:
    results: dict[str, dict[str, float]] = data["decide"]["results"]
    scenarios = list(results)
    names = list(next(iter(results.values())))
    fig, ax = _figure("decide(): ns per call, hot key (lower is better)")
    width = 0.8 / len(scenarios)
    for i, sc in enumerate(scenarios):
        ys = [results[sc][n] for n in names]
        xs = [j + i * width for j in range(len(names))]
        bars = ax.barh(xs, ys, height=width, label=sc)
        ax.bar_label(bars, fmt="%.0f", fontsize=7, padding=2)
    ax.set_yticks([j + width * (len(scenarios) - 1) / 2 for j in range(len(names))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("ns per call (log scale)")
    ax.legend(fontsize=8)
    names_v = ("ratemw", "limits", "pyrate-limiter", "throttled-py")
    return _save(fig, path, data, names_v)


def plot_frameworks(data: dict[str, Any], path: Path) -> Path:
    results: dict[str, dict[str, float]] = data["frameworks"]["results"]
    variants = ["hand-written", "ratemw memory", "ratemw redis", "peer memory", "peer redis"]
    fig, ax = _figure("added µs per allowed request, over the framework alone (lower is better)")
    width = 0.8 / len(variants)
    fws = list(results)
    for i, v in enumerate(variants):
        ys = [max(0.0, (results[fw][v] - results[fw]["baseline"]) / 1000) for fw in fws]
        label = v if not v.startswith("peer") else f"{v} (" + ", ".join(
            FRAMEWORK_PEERS[fw] for fw in fws) + ")"  # fmt: skip
        bars = ax.bar([j + i * width for j in range(len(fws))], ys, width=width, label=label)
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks([j + width * (len(variants) - 1) / 2 for j in range(len(fws))], fws)
    ax.set_ylabel("added µs per request")
    ax.set_ylim(top=ax.get_ylim()[1] * 1.4)  # room for the legend above the tallest bar
    ax.legend(fontsize=8, loc="upper left")
    names = ("ratemw", "flask", "flask-limiter", "starlette", "slowapi", "django",
             "django-ratelimit", "redis-server")  # fmt: skip
    return _save(fig, path, data, names)


def plot_round_trips(data: dict[str, Any], path: Path) -> Path:
    results: dict[str, dict[str, dict[str, float]]] = data["global"]["results"]
    fig, ax = _figure("Redis round trips per 1,000 decisions, as processes grow (lower is better)")
    for contender, by_n in results.items():
        ns = sorted(by_n, key=int)
        ax.plot([int(n) for n in ns], [by_n[n]["round_trips"] for n in ns], "o-", label=contender)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks([int(n) for n in sorted(next(iter(results.values())), key=int)])
    ax.get_xaxis().set_major_formatter("{x:.0f}")
    ax.set_xlabel("processes sharing one Redis")
    ax.set_ylabel("round trips per 1,000 decisions (log scale)")
    ax.legend(fontsize=8)
    return _save(fig, path, data, ("ratemw", "limits", "redis", "redis-server"))


def outage_bound(o: dict[str, Any], t: float) -> float:
    """The global bound on admitted decisions from the start to ``t`` (docs/global.md)."""
    b, r, f, tl, p = o["burst"], o["rate"], o["strand"], o["lease_seconds"], o["processes"]
    t0, t1 = o["down_from"], o["down_to"]

    def interval(span: float) -> float:  # any interval without an outage
        return float(b + r * span + f * b)

    if t <= t0:
        return interval(t)
    during = f * b + r * tl + p * max(1.0, b / p) + r * (min(t, t1) - t0)
    if t <= t1:
        return interval(t0) + float(during)
    return interval(t0) + float(during) + interval(t - t1)


def plot_outage(data: dict[str, Any], path: Path) -> Path:
    o = data["outage"]
    fig, ax = _figure(
        f"admitted through a Redis outage: {o['processes']} limiters, rule"
        f" {o['rate']:g}/s burst {o['burst']}, {o['offered'] / o['end']:,.0f} decisions/s offered"
    )
    times = o["admitted"]
    ax.step([0.0, *times], range(len(times) + 1), where="post", label="admitted (cumulative)")
    grid = [o["end"] * i / 400 for i in range(401)]
    ax.plot(grid, [outage_bound(o, t) for t in grid], "--", label="global bound")
    ax.axvspan(o["down_from"], o["down_to"], color="0.85", label="Redis paused (SIGSTOP)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("decisions admitted")
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path, data, ("ratemw", "redis", "redis-server"))


def plot_memory(data: dict[str, Any], path: Path) -> Path:
    keys: list[int] = data["memory"]["keys"]
    fig, ax = _figure("resident memory against live keys (lower is better)")
    for which, mib in data["memory"]["results"].items():
        ax.plot(keys, mib, "o-", label=MEMORY_NAMES.get(which, which))
    ax.set_xscale("log")
    # per-key cost is the slope; a growth within noise of zero is left out (the table has it)
    ax.set_yscale("log", nonpositive="mask")
    ax.set_xlabel("live keys (log scale)")
    ax.set_ylabel("resident-set growth, MiB (log scale)")
    ax.legend(fontsize=8)
    return _save(fig, path, data, ("ratemw", "limits"))


PLOTS = {
    "decide": plot_decide,
    "frameworks": plot_frameworks,
    "round-trips": plot_round_trips,
    "outage": plot_outage,
    "memory": plot_memory,
}


def write_plots(data: dict[str, Any], img_dir: Path) -> list[Path]:
    """One PNG per part present in ``data``, ``img_dir/bench-<part>.png``."""
    img_dir.mkdir(parents=True, exist_ok=True)
    parts = {"round-trips": "global"}
    return [
        plot(data, img_dir / f"bench-{name}.png")
        for name, plot in PLOTS.items()
        if parts.get(name, name) in data
    ]
