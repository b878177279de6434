"""Worker processes for tests/test_global.py (started with the spawn method).

Each worker builds its own Limiter on the shared Redis, waits for the parent's go,
offers load, and reports what it saw through a queue.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.store.redis import RedisStore


def _report(queue: Any, fn: Any, *args: Any) -> None:
    try:
        queue.put(fn(*args))
    except BaseException:  # the parent must hear about it rather than time out
        queue.put({"error": traceback.format_exc()})


def strict(url: str, rules: dict[str, Any], threads: int, go: Any, ready: Any, queue: Any) -> None:
    def run() -> dict[str, Any]:
        # Exactness is the claim, not fail-fast: on a loaded machine 100 threads may wait
        # longer than the 50 ms command timeout, which would be an outage (local admits).
        limiter = Limiter(rules, store=RedisStore(url, command_timeout_seconds=2.0))
        info = RequestInfo(method="POST", path="/login", peer="198.51.100.1")
        admitted: list[bool] = []
        start = threading.Barrier(threads + 1)

        def attempt() -> None:
            start.wait()
            admitted.append(limiter.decide(info).allowed)

        workers = [threading.Thread(target=attempt) for _ in range(threads)]
        for w in workers:
            w.start()
        ready.put(1)
        go.wait(30)
        start.wait()
        for w in workers:
            w.join()
        outage = limiter.engine.outage_admits if limiter.engine is not None else 0
        limiter.close()
        return {"admitted": sum(admitted), "attempts": len(admitted), "outage": outage}

    _report(queue, run)


def steady(
    url: str, rules: dict[str, Any], rate: float, seconds: float, go: Any, ready: Any,
    queue: Any, marks: Any = None,
) -> None:  # fmt: skip
    """Offer ``rate`` decisions per second for ``seconds``; record each one."""

    def run() -> dict[str, Any]:
        limiter = Limiter(rules, redis_url=url, min_processes=4)
        info = RequestInfo(path="/api/items", peer="198.51.100.2")
        limiter.decide(RequestInfo(path="/warmup", peer="198.51.100.2"))
        ready.put(1)
        go.wait(30)
        start = time.monotonic()
        records: list[tuple[float, float, int, bool]] = []  # wall time, seconds, status, degraded
        errors = 0
        n = 0
        while True:
            due = start + n / rate
            now = time.monotonic()
            if now - start >= seconds:
                break
            if due > now:
                time.sleep(due - now)  # pacing the offered load, not synchronisation
            t0 = time.perf_counter()
            try:
                status = limiter.decide(info).status
            except Exception:
                errors += 1
                status = -1
            records.append((time.time(), time.perf_counter() - t0, status, limiter.engine.degraded))
            n += 1
        engine = limiter.engine
        deadline = time.monotonic() + 5
        while engine._tracked and time.monotonic() < deadline:  # let outage debts settle
            time.sleep(0.05)
            engine.reconcile(time.monotonic())
        result = {
            "records": records, "errors": errors, "lease_calls": engine.lease_calls,
            "round_trips": engine.round_trips, "debited": engine.debited,
            "outage_admits": engine.outage_admits,
            "processes": engine.processes,
        }  # fmt: skip
        limiter.close()
        return result

    _report(queue, run)


def slots(url: str, rules: dict[str, Any], hold: int, ready: Any, queue: Any) -> None:
    """Acquire ``hold`` concurrency slots, report, then wait to be killed."""

    def run() -> dict[str, Any]:
        limiter = Limiter(rules, redis_url=url, slot_ttl_seconds=2.0)
        held = []
        info = RequestInfo(method="POST", path="/checkout", user="u", peer="1.1.1.1")
        for _ in range(hold):
            held.append(limiter.decide(info).allowed)
        return {"held": sum(held)}

    _report(queue, run)
    ready.put(1)
    time.sleep(60)  # the parent SIGKILLs this process while it holds its slots
