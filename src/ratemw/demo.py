"""``ratemw demo``: synthetic traffic through the engine, in real time.

Each scenario is one kind of client offering requests at a steady rate to the
routes of the bundled rules file (the example of docs/rules.md). At the end a
table shows, per rule and tier, what was offered, admitted and rejected, next
to the most the configured limit allows in that time.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from ratemw.errors import ConfigError
from ratemw.limiter import Limiter
from ratemw.request import RequestInfo
from ratemw.rules.model import RuleSet
from ratemw.rules.parse import load_ruleset, parse_ruleset

__all__ = ["run_demo"]


@dataclass
class Scenario:
    rule: str
    tier: str
    per_second: float  # offered per client
    requests: list[RequestInfo]  # one per client, cycled
    batch: int = 1  # requests started together, each holding its slot until all are sent
    offered: int = 0
    admitted: int = 0
    rejected: int = 0
    shadow: dict[str, int] = field(default_factory=dict)
    debt: float = 1.0  # every client sends at once, then at its rate


def _req(method: str, path: str, ip: str, host: str = "www.example.com", **kw: Any) -> RequestInfo:
    return RequestInfo(method=method, path=path, host=host, peer=ip, **kw)


def _scenarios() -> list[Scenario]:
    ips = [f"198.51.100.{i}" for i in range(1, 4)]
    return [
        Scenario("login", "-", 2.0, [_req("POST", "/login", ip) for ip in ips]),
        *(
            Scenario(
                "search",
                tier,
                rate,
                [_req("GET", "/search/shoes", "198.51.100.9", user=f"{tier}-user", tier=tier)],
            )
            for tier, rate in (("free", 30.0), ("basic", 80.0), ("pro", 300.0))
        ),
        Scenario(
            "checkout",
            "-",
            20.0,
            [_req("POST", "/checkout", "198.51.100.7", user="shopper")],
            batch=3,
        ),
        Scenario(
            "reports",
            "-",
            20.0,
            [
                _req(
                    "GET",
                    "/api/reports/7",
                    "198.51.100.8",
                    host="api.example.com",
                    headers={"x-api-key": "k-123"},
                    tenant="initech",
                )
            ],
        ),
        Scenario("api", "-", 150.0, [_req("GET", "/api/items", "198.51.100.10", tenant="acme")]),
        Scenario(
            "partner-api",
            "-",
            400.0,
            [
                _req(
                    "GET",
                    "/api/items",
                    "198.51.100.11",
                    headers={"x-partner": "globex", "x-api-key": "partner-key"},
                )
            ],
        ),
        Scenario("deny list", "-", 5.0, [_req("GET", "/", "203.0.113.5")]),
    ]


def _ceiling(ruleset: RuleSet, sc: Scenario, seconds: float) -> str:
    rule = next((r for r in ruleset.rules if r.name == sc.rule), None)
    if rule is None:
        return "0"
    if rule.concurrency is not None:
        return f"{rule.concurrency} in flight"
    keys = len(sc.requests)
    best = math.inf
    for rate in rule.rates(sc.tier if rule.tiered else None):
        if rule.algorithm in ("token_bucket", "gcra"):
            burst = rule.burst if rule.burst is not None else rate.count
            cap = burst + rate.per_second * seconds
        else:  # windows: every window started in the run, the first one partly used
            cap = rate.count * (math.ceil(seconds / rate.period_seconds) + 1)
        best = min(best, cap / rule.cost)
    return str(int(best * keys))


def run_demo(seconds: float = 3.0, rules: str | None = None, out: TextIO | None = None) -> int:
    """Run the demo for ``seconds`` and print the table; returns an exit status."""
    import sys

    stream = out if out is not None else sys.stdout
    if rules:
        ruleset = load_ruleset(Path(rules))
    else:
        text = resources.files("ratemw.resources").joinpath("demo.yaml").read_bytes()
        parsed, problems = parse_ruleset(text, "ratemw/resources/demo.yaml")
        if parsed is None:
            raise ConfigError(problems)
        # The synthetic clients carry their user, tenant and tier, as an adapter hands
        # them over, and no bearer token: the demo needs no JWT secret, nor PyJWT.
        ruleset = replace(parsed, identity=replace(parsed.identity, jwt=None))
    limiter = Limiter(ruleset)
    scenarios = _scenarios()
    print(
        f"ratemw demo: {len(scenarios)} synthetic clients for {seconds:g} s "
        f"against {len(ruleset.rules)} rules (in-process, no server)",
        file=stream,
    )
    tick = 0.01
    start = last = time.monotonic()
    while (now := time.monotonic()) - start < seconds:
        elapsed, last = now - last, now
        for sc in scenarios:
            sc.debt += sc.per_second * elapsed
            while sc.debt >= 1.0:
                sc.debt -= 1.0
                held = []
                for info in sc.requests * sc.batch:
                    d = limiter.decide(info)
                    held.append(d)
                    sc.offered += 1
                    sc.admitted += d.allowed
                    sc.rejected += not d.allowed
                    for name in d.shadow:
                        sc.shadow[name] = sc.shadow.get(name, 0) + 1
                for d in held:  # the responses finish: slots come back
                    d.release()
        time.sleep(max(0.0, tick - (time.monotonic() - now)))
    run = time.monotonic() - start
    head = ("rule", "tier", "offered", "admitted", "rejected", "limit allows", "shadow would-block")
    rows = [head]
    for sc in scenarios:
        shadow = ", ".join(f"{k}: {v}" for k, v in sc.shadow.items()) or "-"
        rows.append(
            (
                sc.rule,
                sc.tier,
                str(sc.offered),
                str(sc.admitted),
                str(sc.rejected),
                _ceiling(ruleset, sc, run),
                shadow,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    for n, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)), file=stream)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=stream)
    print(
        f"(ran {run:.2f} s; 'limit allows' is the most the rule admits for these clients "
        "in that time; the deny list answers 403)",
        file=stream,
    )
    limiter.close()
    return 0
