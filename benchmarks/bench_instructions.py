"""Instructions per decision and per request, counted by callgrind: ratemw beside its floors.

Run: ``.venv/bin/python benchmarks/bench_instructions.py`` (``--check`` exits 1 when a
guard is exceeded: ``make bench-check``). Needs ``valgrind`` on ``PATH``.

Wall times on a shared machine drift by tens of percent; the number of instructions a
deterministic piece of Python executes does not. This script runs one child Python under
``valgrind --tool=callgrind`` with ``--dump-before=getppid``: the child calls
``os.getppid()`` (nothing else in it does) right before and right after each measured
loop, so callgrind writes one profile per loop, whose total is that loop's instructions.
A loop of the same shape that calls nothing is measured the same way and subtracted;
what is left, divided by the number of calls, is the cost of one call. Python under
callgrind runs about 50 times slower, so the loops are short (``--calls``, 2,000) and
warmed up first (the specialising interpreter, the path memo, the key's state).

Scenarios (``--scenario``, repeatable; default all):

* ``decide``: one hot key, admitted then rejected, for ``ratemw decide()`` (the default
  limiter, metrics on), the dict-bucket floor of ``bench_decide.py`` and, when installed,
  ``limits``' fixed window. Target: ratemw <= 3.0 x the floor (issue #11).
* ``adapters``: one allowed request through a bare WSGI app and a bare ASGI app, through
  a hand-written ten-line middleware around it (a dict bucket and one header: the floor)
  and through ratemw's adapter (``ratemw.wsgi``, ``ratemw.asgi``, ``ratemw_starlette``
  on a Starlette app, ``ratemw_flask`` on a Flask app). The ASGI apps are driven by
  ``coroutine.send(None)``: nothing in them waits, so no event loop runs. Target:
  ratemw's added instructions <= 2.0 x the hand-written middleware's.

``--check`` gates on ``GUARDS``: each ratio a little above today's figure, so that a
regression fails; the targets above are printed beside them.

Everything deterministic is pinned: ``PYTHONHASHSEED=0``, no operations thread
(``interval_seconds: 0``: what it does runs beside requests, not in them), garbage
collection off in the loops. Two runs give the same counts to within a few instructions
per call.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from itertools import repeat
from pathlib import Path
from typing import Any

from _handwritten import handwritten_asgi, handwritten_wsgi
from _requests import PATH, asgi_scope, wsgi_environ

HERE = Path(__file__).resolve().parent
#: ratemw / floor targets (issue #11): decide() on a hot key; an adapter's added cost
DECIDE_TARGET = 3.0
ADAPTER_TARGET = 2.0
#: what ``--check`` gates on: each ratio a little above its figure of 2026-12-02
#: (docs/benchmarks.md), so that a regression fails CI; lower one when the code improves,
#: down to the target. Counts move by a few instructions between runs, not by percents.
GUARDS = {
    "decide, admitted": 3.0,
    "decide, rejected": 2.6,
    "wsgi": 2.2,
    "asgi": 2.0,
    "starlette": 2.5,
    "flask": 2.8,  # a Flask request varies by a few hundred instructions between runs
}
SCENARIOS = ("decide", "adapters", "otel")
#: OpenTelemetry with no tracer provider (the API's no-op): what decide() may add (issue #15)
OTEL_TARGET = 1.03

# -- the child: runs under callgrind, prints its phases' names ------------------------------

#: a phase: (name, call, argument, share of ``--calls`` it runs); ``None`` as call is the
#: empty loop. A whole framework request costs up to 100 times a decision: fewer calls.
Phase = tuple[str, "Callable[[Any], Any] | None", Any, float]


def _loop(call: Callable[[Any], Any] | None, arg: Any, n: int) -> None:
    if call is None:
        for _ in repeat(None, n):
            pass
    else:
        for _ in repeat(None, n):
            call(arg)


EMPTY = "empty loop"


def _measure(phases: Iterator[Phase], calls: int, warmup: int) -> list[tuple[str, int]]:
    """Run each phase between two ``os.getppid()`` markers: one callgrind dump each."""
    done = []
    marker = os.getppid
    # Lazily: a phase may change process-wide state (the otel scenario) for the next ones.
    for name, call, arg, share in itertools.chain([(EMPTY, None, None, 1.0)], phases):
        n = max(1, int(calls * share))
        _loop(call, arg, max(1, int(warmup * share)))
        gc.collect()
        gc.disable()
        marker()  # dump: everything since the last marker (set-up, warm-up)
        _loop(call, arg, n)
        marker()  # dump: the measured loop
        gc.enable()
        done.append((name, n))
    return done


def _decide_phases() -> Iterator[Phase]:
    sys.path.insert(0, str(HERE))
    from bench_decide import HOT_IP, PATH, dict_bucket, limits_hitter, rules
    from ratemw import Limiter, RequestInfo

    info = RequestInfo(method="GET", path=PATH, peer=HOT_IP)
    quiet = {"interval_seconds": 0}  # no operations thread: its work is not a request's
    for verdict, limit, rate, burst in (
        ("admitted", "1000000000/second", 1e9, 1e9),
        ("rejected", "1/day", 1 / 86400, 1.0),
    ):
        yield f"dict bucket (floor), {verdict}", dict_bucket(rate, burst), HOT_IP, 1.0
        limiter = Limiter(rules(limit), operations=quiet)
        yield f"ratemw decide(), {verdict}", limiter.decide, info, 1.0
        try:
            hit = limits_hitter("fixed", limit)
        except ImportError:
            continue
        yield f"limits fixed window, {verdict}", hit, HOT_IP, 0.25


LIMIT = "1000000000/second"
RULES: dict[str, Any] = {"rules": [{"name": "api", "match": {"path": PATH}, "limit": LIMIT}]}
QUIET = {"interval_seconds": 0}


def _wsgi_request(app: Any) -> Callable[[Any], Any]:
    base = wsgi_environ()

    def start_response(status: str, headers: Any, exc_info: Any = None) -> Any:
        if status[:3] != "200":
            raise RuntimeError(f"answered {status}")
        return None

    def request(_: Any) -> None:
        body = app(dict(base), start_response)
        for _chunk in body:
            pass
        close = getattr(body, "close", None)
        if close is not None:
            close()

    return request


def _asgi_request(app: Any) -> Callable[[Any], Any]:
    base = asgi_scope()
    message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"answered {message['status']}")

    def request(_: Any) -> None:
        # Nothing awaited ever suspends: one send(None) runs the request to the end.
        try:
            app(dict(base), receive, send).send(None)
        except StopIteration:
            return
        raise RuntimeError("the ASGI app suspended")

    return request


def _adapter_phases() -> Iterator[Phase]:
    from ratemw import AsyncLimiter, Limiter
    from ratemw.asgi import RateLimitMiddleware as AsgiMiddleware
    from ratemw.wsgi import RateLimitMiddleware as WsgiMiddleware

    def wsgi_app(environ: Any, start_response: Any) -> Any:
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    async def asgi_app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    yield from _adapter_trio(
        "wsgi",
        _wsgi_request(wsgi_app),
        _wsgi_request(handwritten_wsgi(wsgi_app, 1e9, 1e9)),
        _wsgi_request(WsgiMiddleware(wsgi_app, limiter=Limiter(RULES, operations=QUIET))),
    )
    yield from _adapter_trio(
        "asgi",
        _asgi_request(asgi_app),
        _asgi_request(handwritten_asgi(asgi_app, 1e9, 1e9)),
        _asgi_request(AsgiMiddleware(asgi_app, limiter=AsyncLimiter(RULES, operations=QUIET))),
    )
    with contextlib.suppress(ImportError):
        yield from _starlette()
    with contextlib.suppress(ImportError):
        yield from _flask()


def _adapter_trio(
    name: str,
    bare: Callable[[Any], Any],
    floor: Callable[[Any], Any],
    ours: Callable[[Any], Any],
    share: float = 0.5,
) -> Iterator[Phase]:
    yield f"{name}: bare app", bare, None, share
    yield f"{name}: hand-written (floor)", floor, None, share
    yield f"{name}: ratemw", ours, None, share


def _starlette() -> Iterator[Phase]:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ratemw import AsyncLimiter
    from ratemw_starlette import RateLimitMiddleware

    async def items(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    def app(*middleware: Middleware) -> Any:
        return Starlette(routes=[Route(PATH, items)], middleware=list(middleware))

    ours = Middleware(RateLimitMiddleware, limiter=AsyncLimiter(RULES, operations=QUIET))
    yield from _adapter_trio(
        "starlette",
        _asgi_request(app()),
        _asgi_request(app(Middleware(handwritten_asgi, 1e9, 1e9))),
        _asgi_request(app(ours)),
        0.1,
    )


def _flask() -> Iterator[Phase]:
    from flask import Flask

    from ratemw_flask import RateMW

    def app(limited: bool) -> Any:
        flask = Flask("bench")
        flask.add_url_rule(PATH, "items", lambda: "ok")
        if limited:
            RateMW(flask, rules=RULES, operations=QUIET)
        return flask

    yield from _adapter_trio(
        "flask",
        _wsgi_request(app(False)),
        _wsgi_request(handwritten_wsgi(app(False), 1e9, 1e9)),
        _wsgi_request(app(True)),
        0.1,
    )


def _otel_phases() -> Iterator[Phase]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    from ratemw import Limiter, RequestInfo
    from ratemw.ops import otel

    info = RequestInfo(method="GET", path=PATH, peer="198.51.100.7")
    yield "dict bucket (floor), admitted", _floor(), "198.51.100.7", 1.0
    otel.use(None)  # the API alone: its global provider is a no-op proxy
    plain = Limiter(RULES, operations=QUIET)
    yield "decide(), otel API, no provider", plain.decide, info, 1.0
    otel.use(TracerProvider(sampler=ALWAYS_OFF))
    sampled_out = Limiter(RULES, operations=QUIET)
    yield "decide(), SDK provider, sampled out", sampled_out.decide, info, 1.0
    provider = TracerProvider()  # no exporter: spans are recorded, then dropped
    otel.use(provider)
    recording = Limiter(RULES, operations=QUIET)
    span = provider.get_tracer("bench").start_span("request")
    from opentelemetry import context, trace

    context.attach(trace.set_span_in_context(span))  # the server span, for the rest
    yield "decide(), SDK provider, recording span", recording.decide, info, 1.0


def _floor() -> Callable[[Any], Any]:
    sys.path.insert(0, str(HERE))
    from bench_decide import dict_bucket

    return dict_bucket(1e9, 1e9)


def child(scenario: str, calls: int, warmup: int) -> None:
    phases = {"decide": _decide_phases, "adapters": _adapter_phases, "otel": _otel_phases}[
        scenario
    ]()
    names = _measure(phases, calls, warmup)
    print(json.dumps(names))


# -- the parent --------------------------------------------------------------------------


def run_scenario(scenario: str, calls: int, warmup: int, workdir: Path) -> subprocess.Popen[str]:
    out = workdir / f"{scenario}.out"
    cmd = [
        "valgrind", "--tool=callgrind", "--dump-before=getppid", f"--callgrind-out-file={out}",
        "--dump-line=no", "--compress-strings=no", sys.executable, __file__,
        "--child", scenario, str(calls), str(warmup),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=workdir
    )


def _totals(path: Path) -> int:
    for line in path.read_text().splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            return int(line.split()[1])
    raise RuntimeError(f"{path}: no totals")


def collect(
    proc: subprocess.Popen[str], scenario: str, calls: int, workdir: Path
) -> dict[str, float]:
    """name -> instructions per call, the empty loop subtracted."""
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{scenario}: child failed ({proc.returncode}):\n{stderr[-3000:]}")
    done: list[tuple[str, int]] = json.loads(stdout.strip().splitlines()[-1])
    base = workdir / f"{scenario}.out"
    # Dump k (1-based) ends at the k-th marker: the loop of phase j is dump 2j + 2.
    per_call = {name: (_totals(Path(f"{base}.{2 * j + 2}")), n) for j, (name, n) in enumerate(done)}
    empty_ir, empty_n = per_call.pop(EMPTY)
    empty = empty_ir / empty_n
    return {name: ir / n - empty for name, (ir, n) in per_call.items()}


def _verdict(name: str, ratio: float, target: float, failures: list[str]) -> str:
    guard = GUARDS.get(name)
    if guard is not None and ratio > guard:
        failures.append(f"{name}: {ratio:.2f} x floor > guard {guard:.2f}")
    target_ok = "meets" if ratio <= target else "MISSES"
    guard_ok = "-" if guard is None else ("ok" if ratio <= guard else "EXCEEDED")
    return f"{ratio:5.2f} x floor: target {target:.1f} {target_ok}; guard {guard} {guard_ok}"


def report(results: dict[str, dict[str, float]]) -> list[str]:
    """Print the tables; return the guards exceeded."""
    failures: list[str] = []
    decide = results.get("decide")
    if decide:
        print()
        head = f"{'decide(), one hot key':<40} {'instr/call':>10} {'x floor':>8}"
        print(f"{head} {'limits fw / this':>17}")
        for verdict in ("admitted", "rejected"):
            floor = decide[f"dict bucket (floor), {verdict}"]
            fixed = decide.get(f"limits fixed window, {verdict}")
            for name, ir in decide.items():
                if name.endswith(verdict):
                    vs = f"{fixed / ir:17.2f}" if fixed else f"{'-':>17}"
                    print(f"{name:<40} {ir:>10,.0f} {ir / floor:>8.2f} {vs}")
        print()
        print(f"ratemw decide() / dict floor (target, issue #11: <= {DECIDE_TARGET:.1f}):")
        for verdict in ("admitted", "rejected"):
            ours = decide[f"ratemw decide(), {verdict}"]
            ratio = ours / decide[f"dict bucket (floor), {verdict}"]
            name = f"decide, {verdict}"
            print(f"  {name:<18} {_verdict(name, ratio, DECIDE_TARGET, failures)}")
    traced = results.get("otel")
    if traced:
        print()
        print(f"{'OpenTelemetry, one hot key (admitted)':<40} {'instr/call':>10} {'x no otel':>9}")
        base = traced["decide(), otel API, no provider"]
        for name, ir in traced.items():
            print(f"{name:<40} {ir:>10,.0f} {ir / base:>9.3f}")
        floor = traced["dict bucket (floor), admitted"]
        ratio = base / decide["ratemw decide(), admitted"] if decide else 1.0
        print(
            f"  decide() with the API and no provider / decide() without (target, issue #15:"
            f" <= {OTEL_TARGET:.2f}): {ratio:.3f} ({base / floor:.2f} x floor)"
        )
        if ratio > OTEL_TARGET:
            failures.append(f"otel no-op: {ratio:.3f} > {OTEL_TARGET:.2f}")
    adapters = results.get("adapters")
    if adapters:
        frameworks = list(dict.fromkeys(name.split(":")[0] for name in adapters))
        print()
        print(f"{'one allowed request':<34} {'instr/request':>13} {'added':>8} {'x floor':>8}")
        for fw in frameworks:
            bare = adapters[f"{fw}: bare app"]
            floor = adapters[f"{fw}: hand-written (floor)"] - bare
            for name, ir in adapters.items():
                if name.startswith(f"{fw}:"):
                    added = ir - bare
                    x = f"{added / floor:8.2f}" if not name.endswith("bare app") else f"{'':>8}"
                    print(f"{name:<34} {ir:>13,.0f} {added:>+8,.0f} {x}")
        print()
        print(
            "ratemw's added instructions / the hand-written middleware's"
            f" (target, issue #11: <= {ADAPTER_TARGET:.1f}):"
        )
        for fw in frameworks:
            bare = adapters[f"{fw}: bare app"]
            ours = adapters[f"{fw}: ratemw"] - bare
            ratio = ours / (adapters[f"{fw}: hand-written (floor)"] - bare)
            print(f"  {fw:<18} {_verdict(fw, ratio, ADAPTER_TARGET, failures)}")
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2_000, help="calls per measured loop")
    parser.add_argument("--warmup", type=int, default=300, help="calls before each loop")
    parser.add_argument("--scenario", choices=SCENARIOS, action="append")
    parser.add_argument("--check", action="store_true", help="exit 1 when a guard is exceeded")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]))
        return 0
    if shutil.which("valgrind") is None:
        print("bench_instructions: valgrind is not on PATH", file=sys.stderr)
        return 2
    scenarios = args.scenario or list(SCENARIOS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ratemw-callgrind-") as tmp:
        workdir = Path(tmp)
        # One callgrind child per scenario, side by side (counts do not depend on load).
        procs = {sc: run_scenario(sc, args.calls, args.warmup, workdir) for sc in scenarios}
        results = {sc: collect(proc, sc, args.calls, workdir) for sc, proc in procs.items()}
    print(
        f"Python {sys.version.split()[0]}; instructions per call under callgrind, loops of"
        f" {args.calls:,} calls after {args.warmup:,} warm-up calls, empty loop subtracted"
        f" ({time.monotonic() - started:.0f} s)"
    )
    failures = report(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    if args.check and failures:
        print()
        for failure in failures:
            print(f"bench-check: over its guard: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
