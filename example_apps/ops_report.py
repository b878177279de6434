"""The demo's operations report: what each app's ``/metrics`` and the shared Redis say.

``ratemw_decisions_total`` is summed over every worker (the apps run with
``PROMETHEUS_MULTIPROC_DIR``, so each worker's operations loop writes its counts
where prometheus_client's multiprocess collector finds them), and the fleet's top
offenders come from the per-minute sorted sets the workers merge into Redis.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import IO, Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ratemw.ops.shared import Layout

__all__ = ["print_operations", "scrape_decisions"]

Decisions = Counter[tuple[str, str, str]]  # (rule, verdict, mode) -> decisions


def scrape_decisions(url: str) -> Decisions:
    """``ratemw_decisions_total`` of the app at ``url``, by rule, verdict and mode."""
    text = httpx.get(f"{url}/metrics", timeout=5.0).text
    out: Decisions = Counter()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "ratemw_decisions_total":
                out[(s.labels["rule"], s.labels["verdict"], s.labels["mode"])] += int(s.value)
    return out


def _settled(url: str, deadline_seconds: float = 5.0) -> Decisions:
    # Workers push their counts every operations interval: read until two reads agree.
    last = scrape_decisions(url)
    end = time.monotonic() + deadline_seconds
    while time.monotonic() < end:
        time.sleep(0.3)
        now = scrape_decisions(url)
        if now == last:
            break
        last = now
    return last


def print_operations(apps: Sequence[tuple[str, str, Any]], out: IO[str]) -> None:
    """``apps``: (title, base URL, a redis-py client of its database or None)."""
    for title, url, redis in apps:
        decisions = _settled(url)
        print(f"\n{title}: /metrics, ratemw_decisions_total summed over its workers", file=out)
        verdicts = sorted({(v, m) for _, v, m in decisions})
        rules = sorted({r for r, _, _ in decisions})
        head = ["rule", *(v if m == "enforce" else f"{v} ({m})" for v, m in verdicts)]
        rows = [head] + [
            [rule, *(str(decisions[(rule, v, m)]) for v, m in verdicts)] for rule in rules
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        for n, row in enumerate(rows):
            cells = [c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                     enumerate(zip(row, widths, strict=True))]  # fmt: skip
            print("  " + "  ".join(cells), file=out)
            if n == 0:
                print("  " + "  ".join("-" * w for w in widths), file=out)
        if redis is None:
            continue
        top = Layout().top(redis, time.time(), minutes=5, n=3)
        print("  top offenders (fleet-wide, from Redis; hashed unless addresses):", file=out)
        for rule, ranked in sorted(top.items()):
            shown = ", ".join(f"{who} x{count}" for who, count in ranked)
            print(f"    {rule}: {shown}", file=out)
        if not top:
            print("    none", file=out)
