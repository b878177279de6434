"""Added µs per allowed request in Flask, Starlette and Django: ratemw beside each peer.

Run: ``make bench-frameworks`` (or ``.venv/bin/python benchmarks/bench_frameworks.py``);
a throwaway ``redis-server`` on a loopback port is started and stopped (``_redis.py``).

Per framework, five variants of one app with one route (``GET /api/items`` answering a
short text) and, where limited, one matching rule on the client address with a limit so
high that every request is allowed:

* ``no limiter``: the baseline;
* ``hand-written``: the floor, a ten-line middleware keeping a dict bucket per client and
  setting one header (``_handwritten.py``): a WSGI wrapper for Flask, a pure ASGI
  middleware for Starlette, a middleware function for Django;
* ``ratemw memory`` / ``ratemw redis``: the adapter (``ratemw_flask.RateMW``,
  ``ratemw_starlette.RateLimitMiddleware``, ``ratemw_django.RateLimitMiddleware``), per
  process or leased from Redis;
* the peer in memory / on Redis: Flask-Limiter (``default_limits``), slowapi
  (``default_limits`` with ``SlowAPIASGIMiddleware``), django-ratelimit (``@ratelimit``
  on the view, ``LocMemCache`` / ``RedisCache``), each in its documented default set-up.

Requests are in-process calls, no network: Flask through its WSGI callable with a
prepared environ, Starlette through its ASGI callable with a prepared scope on one event
loop, Django through ``django.test.Client``. Each variant lives in a child process of its
own (settings and global state cannot leak between variants) and is warmed up first; the
parent runs them in interleaved rounds and keeps the best ns per request of each. Added
overhead = variant - baseline, from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import types
from collections.abc import Callable, MutableMapping
from typing import IO, Any

from _handwritten import handwritten_asgi, handwritten_wsgi
from _redis import throwaway_redis
from _requests import PATH, PEER, asgi_scope, wsgi_environ

LIMIT = "1000000000/second"  # every request is allowed
RULES: dict[str, Any] = {
    "version": 1,
    "rules": [{"name": "api", "match": {"path": PATH}, "limit": LIMIT}],
}
FRAMEWORKS = {
    "flask": "Flask-Limiter",
    "starlette": "slowapi",
    "django": "django-ratelimit",
}
VARIANTS = (
    "baseline", "hand-written", "ratemw memory", "ratemw redis", "peer memory", "peer redis",
)  # fmt: skip
#: the issue's measurements of the peers' added µs per request (memory, Redis)
ISSUE_PEER_US = {"flask": (85, 265), "starlette": (18, 163), "django": (50, 691)}

#: runs ``n`` requests; returns how many were not answered 200
Run = Callable[[int], int]
#: (run, close): close gives leased tokens back and stops the reconcile loop
Runner = tuple[Run, Callable[[], None]]


# -- the variants, built in a child process -------------------------------------------------


def flask_runner(variant: str, url: str) -> Runner:
    from flask import Flask

    app = Flask("bench")

    @app.get(PATH)
    def items() -> str:
        return "ok"

    limiter: Any = None
    if variant == "hand-written":
        app.wsgi_app = handwritten_wsgi(app.wsgi_app, 1e9, 1e9)  # type: ignore[method-assign]
    elif variant.startswith("ratemw"):
        from ratemw_flask import RateMW

        RateMW(app, rules=RULES, redis_url=url if variant == "ratemw redis" else None)
        limiter = app.extensions["ratemw"].limiter
    elif variant.startswith("peer"):
        from flask_limiter import Limiter
        from flask_limiter.util import get_remote_address

        storage = url if variant == "peer redis" else "memory://"
        Limiter(get_remote_address, app=app, default_limits=[LIMIT], storage_uri=storage)

    base = wsgi_environ()
    status: list[str] = []

    def start_response(s: str, headers: Any, exc_info: Any = None) -> Callable[[bytes], Any]:
        status.append(s)
        return lambda data: None

    def run(n: int) -> int:
        status.clear()
        for _ in range(n):
            body = app(dict(base), start_response)
            for _chunk in body:
                pass
            close = getattr(body, "close", None)
            if close is not None:
                close()
        return sum(not s.startswith("200") for s in status)

    def close() -> None:
        if limiter is not None:
            limiter.close()

    return run, close


def starlette_runner(variant: str, url: str) -> Runner:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    middleware: list[Middleware] = []
    limiter: Any = None
    if variant == "hand-written":
        middleware.append(Middleware(handwritten_asgi, 1e9, 1e9))
    elif variant.startswith("ratemw"):
        from ratemw_starlette import RateLimitMiddleware

        redis_url = url if variant == "ratemw redis" else None
        middleware.append(Middleware(RateLimitMiddleware, rules=RULES, redis_url=redis_url))
    elif variant.startswith("peer"):
        from slowapi import Limiter
        from slowapi.middleware import SlowAPIASGIMiddleware
        from slowapi.util import get_remote_address

        storage = url if variant == "peer redis" else "memory://"
        limiter = Limiter(get_remote_address, default_limits=[LIMIT], storage_uri=storage)
        middleware.append(Middleware(SlowAPIASGIMiddleware))
    app = Starlette(routes=[Route(PATH, items)], middleware=middleware)
    if limiter is not None:
        from slowapi import _rate_limit_exceeded_handler
        from slowapi.errors import RateLimitExceeded

        app.state.limiter = limiter
        handler: Any = _rate_limit_exceeded_handler  # typed for RateLimitExceeded only
        app.add_exception_handler(RateLimitExceeded, handler)

    scope = asgi_scope()
    request = {"type": "http.request", "body": b"", "more_body": False}
    status: list[int] = []

    async def receive() -> dict[str, Any]:
        return request

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    async def many(n: int) -> None:
        for _ in range(n):
            await app(dict(scope), receive, send)

    loop = asyncio.new_event_loop()  # one loop for the child's life: leases live on it

    def run(n: int) -> int:
        status.clear()
        loop.run_until_complete(many(n))
        return sum(s != 200 for s in status)

    def close() -> None:
        layer: Any = app.middleware_stack
        while layer is not None:  # find the adapter among the built middleware layers
            if hasattr(layer, "limiter"):
                loop.run_until_complete(layer.limiter.aclose())
                break
            layer = getattr(layer, "app", None)
        # aclose() cancels the reconcile task without awaiting it: let it finish.
        loop.run_until_complete(_drain())
        loop.close()

    return run, close


def django_runner(variant: str, url: str) -> Runner:
    import django
    from django.conf import settings
    from django.http import HttpRequest, HttpResponse
    from django.urls import path

    def items(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    view: Any = items
    middleware: list[str] = []
    if variant == "hand-written":
        middleware.append("_handwritten.handwritten_django")
    elif variant.startswith("ratemw"):
        middleware.append("ratemw_django.RateLimitMiddleware")
    elif variant.startswith("peer"):
        from django_ratelimit.decorators import ratelimit  # type: ignore[import-untyped]

        rate = LIMIT.replace("second", "s")
        view = ratelimit(key="ip", rate=rate, block=True)(items)
    urls = types.ModuleType("bench_urls")
    urls.urlpatterns = [path(PATH.lstrip("/"), view)]  # type: ignore[attr-defined]
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=urls,
        MIDDLEWARE=middleware,
        INSTALLED_APPS=[],
        CACHES={
            "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
            "redis": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
        },
        RATELIMIT_USE_CACHE="redis" if variant == "peer redis" else "default",
        RATEMW={"RULES": RULES, "REDIS_URL": url if variant == "ratemw redis" else None},
    )
    django.setup()
    from django.test import Client

    client = Client(REMOTE_ADDR=PEER)

    def run(n: int) -> int:
        get = client.get
        return sum(get(PATH).status_code != 200 for _ in range(n))

    return run, lambda: None  # the reconcile thread is a daemon


async def _drain() -> None:
    """Wait for every other task of the running loop to finish."""
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others, return_exceptions=True)


RUNNERS: dict[str, Callable[[str, str], Runner]] = {
    "flask": flask_runner,
    "starlette": starlette_runner,
    "django": django_runner,
}


def child(framework: str, variant: str, url: str, warmup_seconds: float) -> None:
    """Build one variant, warm it up, then answer "N" lines with timings (JSON lines)."""
    out: IO[str] = sys.stdout
    sys.stdout = sys.stderr  # nothing a library prints may corrupt the protocol
    run, close = RUNNERS[framework](variant, url)
    failed = 0
    deadline = time.monotonic() + warmup_seconds  # imports, caches, the first leases
    while time.monotonic() < deadline:
        failed += run(200)
    print(json.dumps({"ready": True, "failed": failed}), file=out, flush=True)
    for line in sys.stdin:
        n = int(line)
        gc.collect()
        gc.disable()
        try:
            start = time.perf_counter_ns()
            failed = run(n)
            ns = (time.perf_counter_ns() - start) / n
        finally:
            gc.enable()
        print(json.dumps({"ns": ns, "failed": failed}), file=out, flush=True)
    close()


# -- the parent ----------------------------------------------------------------------------


class Child:
    def __init__(self, framework: str, variant: str, url: str, warmup: float) -> None:
        self.variant = variant
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", framework, variant, url, str(warmup)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, line: str | None) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise RuntimeError(f"{self.variant}: child exited ({self.proc.wait()})")
        result: dict[str, Any] = json.loads(answer)
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def measure(
    framework: str, url: str, calls: int, rounds: int, warmup: float
) -> tuple[dict[str, float], int]:
    """Best ns per request of each variant, and how many requests were not answered 200."""
    children = [Child(framework, v, url, warmup) for v in VARIANTS]
    failed = 0
    try:
        for c in children:
            failed += c.ask(None)["failed"]
        best = {v: float("inf") for v in VARIANTS}
        for r in range(rounds):
            # Rotate the order too: no variant always runs right after the same one.
            for c in children[r % len(children) :] + children[: r % len(children)]:
                got = c.ask(str(calls))
                failed += got["failed"]
                best[c.variant] = min(best[c.variant], got["ns"])
        return best, failed
    finally:
        for c in children:
            c.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2_000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds per variant")
    parser.add_argument("--framework", choices=sorted(FRAMEWORKS), action="append")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        framework, variant, url, warmup = args.child
        child(framework, variant, url, float(warmup))
        return 0

    frameworks = args.framework or list(FRAMEWORKS)
    results: dict[str, dict[str, float]] = {}
    with throwaway_redis() as server:
        print(
            f"Python {sys.version.split()[0]}; redis-server {server.version()} on loopback;"
            f" best of {args.rounds} interleaved rounds of {args.calls:,} requests"
        )
        for fw in frameworks:
            best, failed = measure(fw, server.url, args.calls, args.rounds, args.warmup)
            if failed:
                print(f"warning: {fw}: {failed:,} requests were not answered 200")
            results[fw] = best

    print()
    print(
        f"{'framework':<10} {'variant':<26} {'µs/request':>10} {'added µs':>9}"
        f" {'peer mem / this':>15} {'peer redis / this':>17} {'x hand-written':>14}"
    )
    for fw, best in results.items():
        base = best["baseline"]
        added = {v: (ns - base) / 1000 for v, ns in best.items()}
        for v in VARIANTS:
            name = v.replace("peer", FRAMEWORKS[fw])
            ratios = ""
            if v != "baseline":
                ratios = (
                    f" {_ratio(added['peer memory'], added[v]):>15}"
                    f" {_ratio(added['peer redis'], added[v]):>17}"
                    f" {_ratio(added[v], added['hand-written']):>14}"
                )
            print(f"{fw:<10} {name:<26} {best[v] / 1000:>10.1f} {added[v]:>+9.1f}{ratios}")
    print()
    print("targets (issue #4 item 10): ratemw added <= 1/5 of the peer's in-memory added,")
    print("                            ratemw added <= 1/20 of the peer's Redis added")
    for fw, best in results.items():
        base = best["baseline"]
        added = {v: (ns - base) / 1000 for v, ns in best.items()}
        peer = FRAMEWORKS[fw]
        mem_us, redis_us = ISSUE_PEER_US[fw]
        for ours, theirs, share, issue_us in (
            ("ratemw memory", "peer memory", 5, mem_us),
            ("ratemw redis", "peer redis", 20, redis_us),
        ):
            ok = added[ours] <= added[theirs] / share
            print(
                f"  {fw:<10} {ours:<14} {added[ours]:>+6.1f} µs vs {peer} {theirs[5:]}"
                f" {added[theirs]:>+6.1f} µs (issue: +{issue_us}) / {share}"
                f" = {added[theirs] / share:5.1f}: {'meets' if ok else 'MISSES'}"
            )
    print()
    print("targets (issue #11): ratemw added <= 2 x a hand-written ten-line middleware's added")
    print("                     (a dict bucket and one header, _handwritten.py), same framework")
    for fw, best in results.items():
        base = best["baseline"]
        floor = (best["hand-written"] - base) / 1000
        for ours in ("ratemw memory", "ratemw redis"):
            ours_us = (best[ours] - base) / 1000
            ok = ours_us <= 2 * floor
            print(
                f"  {fw:<10} {ours:<14} {ours_us:>+6.1f} µs vs hand-written {floor:>+5.1f} µs:"
                f" {_ratio(ours_us, floor):>5} x: {'meets' if ok else 'MISSES'}"
            )
    return 0


def _ratio(theirs: float, ours: float) -> str:
    if ours <= 0:
        return "-"  # within noise of the baseline
    return f"{theirs / ours:.1f}"


if __name__ == "__main__":
    sys.exit(main())
