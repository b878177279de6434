"""The console's real stack: ``ratemw control`` in a subprocess on a free loopback port,
the session's real Redis, two limiter processes (uvicorn) following the rules the
control service publishes and sending their operations to that Redis, background
traffic, and headless Chromium driven by Playwright.

One stack and one browser serve a whole test module: its flows run in order. Every wait
is a poll with a deadline. Set ``RATEMW_SCREENSHOTS=docs/img`` to save a PNG of each
page the flows visit (``make screenshots``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from ratemw.control.auth import token_digest
from ratemw.store.server import RedisServer
from tests.processes import HOST, free_port, launch, stop

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 40.0  # a loaded 2-core machine starts Python processes slowly
DEADLINE = 30.0
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = os.environ.get("RATEMW_SCREENSHOTS", "")

#: role -> (principal, token); only the digests reach the service
PEOPLE = {
    "editor": ("alice", "tok-alice-" + uuid.uuid4().hex),
    "approver": ("bob", "tok-bob-" + uuid.uuid4().hex),
    "admin": ("carol", "tok-carol-" + uuid.uuid4().hex),
    "viewer": ("victor", "tok-victor-" + uuid.uuid4().hex),
}
RULES_V1 = """version: 1
identity:
  trusted_proxies: ["127.0.0.1/32"]
tiers: [free, pro]
rules:
  - name: login
    match: {methods: [POST], path: /login}
    identity: ip
    limit: 2/minute
    lease: {size: 1}
  - name: search
    match: {path: "/search/**"}
    identity: ip
    limit: 5/second
"""

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, deadline: float = DEADLINE) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``deadline`` s."""
    end = time.monotonic() + deadline
    last: Any = None
    while True:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last  # type: ignore[no-any-return]
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f} s waiting for {what} (last: {last!r})")
        time.sleep(0.1)


class Traffic:
    """Background requests to both limiters (a steady client and one over its limit),
    paused when a test needs the counters still."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.run = threading.Event()
        self.idle = threading.Event()
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._loop, name="console-traffic", daemon=True)

    def _loop(self) -> None:
        who = itertools.cycle(["192.0.2.10", "192.0.2.99", "192.0.2.99", "192.0.2.99"])
        with httpx.Client(timeout=5.0) as client:
            for i in itertools.count():
                if self.stop.is_set():
                    return
                if not self.run.is_set():
                    self.idle.set()
                    self.run.wait(0.2)
                    continue
                self.idle.clear()
                url = self.urls[i % len(self.urls)]
                try:
                    client.get(f"{url}/search/q{i % 7}", headers={"X-Forwarded-For": next(who)})
                    self.sent += 1
                except httpx.HTTPError:
                    pass
                self.stop.wait(0.08)  # about 12 requests a second: light on 2 cores

    def pause(self) -> None:
        self.run.clear()
        self.idle.wait(DEADLINE)

    def resume(self) -> None:
        self.run.set()


@dataclass
class Stack:
    url: str  # the control service
    db_url: str
    limiters: list[str]
    redis: RedisServer
    ops_app: str
    tmp: Path
    traffic: Traffic
    state: dict[str, Any] = field(default_factory=dict)  # what one flow leaves the next

    def token(self, role: str) -> str:
        return PEOPLE[role][1]

    def api(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(role)}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=10, **kwargs)
        assert response.status_code < 300, response.text
        return response.json() if response.content else None

    def digests(self) -> list[str]:
        return [httpx.get(f"{u}/digest", timeout=5).json()["digest"] for u in self.limiters]

    def wait_published(self) -> str:
        """The digest the live deployment published, once every limiter runs it."""
        live = self.api("GET", "/v1/status")["live"]
        (digest,) = set(live["published"].values())
        wait_for(lambda: set(self.digests()) == {digest}, f"limiters on rules {digest[:12]}")
        return str(digest)


def _wait_healthy(url: str, process: Any, log: Path, path: str = "/health") -> None:
    def healthy() -> bool:
        assert process.poll() is None, f"{url} exited:\n{log.read_text(errors='replace')}"
        return httpx.get(url + path, timeout=2).status_code == 200

    wait_for(healthy, f"{url}{path}", START_DEADLINE)


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    redis_server.ensure_running()
    with redis_server.client() as client:
        client.flushall()
    tmp = tmp_path_factory.mktemp("console")
    live = tmp / "live"
    live.mkdir()
    tokens = {token_digest(tok): {"principal": name, "role": role}
              for role, (name, tok) in PEOPLE.items()}  # fmt: skip
    (tmp / "tokens.json").write_text(json.dumps({"tokens": tokens}))
    ops_app = f"console{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATEMW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    db_url = f"sqlite:///{tmp / 'control.db'}"
    port = free_port()
    control = launch([
        sys.executable, "-m", "ratemw.cli", "control", "--db", db_url, "--publish",
        live.as_uri(), "--tokens", str(tmp / "tokens.json"), "--host", HOST, "--port",
        str(port), "--ops-redis", redis_server.url, "--ops-app", ops_app,
    ], env, tmp / "control.log", tmp)  # fmt: skip
    processes = [control]
    traffic: Traffic | None = None
    try:
        url = f"http://{HOST}:{port}"
        _wait_healthy(url, control, tmp / "control.log", "/healthz")
        stack = Stack(url, db_url, [], redis_server, ops_app, tmp, Traffic([]))
        v1 = stack.api("POST", "/v1/versions", "editor",
                       json={"document": RULES_V1, "message": "first rules"})  # fmt: skip
        vid = v1["version"]["id"]
        stack.api("POST", f"/v1/versions/{vid}/approvals", "approver", json={})
        stack.api("POST", f"/v1/versions/{vid}/rollout", "admin", json={"stage": "enforce"})
        stack.state["v1"] = vid
        limiter_env = {
            **env, "CONSOLE_RULES": str(live / "ratelimits.yaml"),
            "RATEMW_REDIS_URL": redis_server.url, "CONSOLE_OPS_APP": ops_app,
        }  # fmt: skip
        for n in range(2):
            lport = free_port()
            log = tmp / f"limiter{n}.log"
            process = launch([
                sys.executable, "-m", "uvicorn", "tests.console.limiter_app:app", "--host", HOST,
                "--port", str(lport), "--log-level", "warning", "--no-access-log",
            ], limiter_env, log, ROOT)  # fmt: skip
            processes.append(process)
            stack.limiters.append(f"http://{HOST}:{lport}")
            _wait_healthy(stack.limiters[-1], process, log)
        stack.wait_published()
        traffic = stack.traffic = Traffic(stack.limiters)
        traffic.thread.start()
        traffic.resume()
        yield stack
    finally:
        if traffic is not None:
            traffic.stop.set()
            traffic.run.set()
            traffic.thread.join(10)
        for process in reversed(processes):
            stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Session:
    """A signed-in browser page and what it saw: console messages, requested URLs."""

    page: Any
    context: Any
    messages: list[str]
    requested: list[str]

    def shot(self, name: str) -> None:
        if SCREENSHOTS:
            directory = ROOT / SCREENSHOTS
            directory.mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(directory / f"console-{name}.png"), full_page=True)


@pytest.fixture(scope="module")
def open_session(stack: Stack, browser: Any) -> Iterator[Callable[..., Session]]:
    """``open_session(role)``: a fresh browser context signed in as that role."""
    contexts: list[Any] = []

    def make(role: str | None, width: int = 1280, height: int = 900) -> Session:
        context = browser.new_context(viewport={"width": width, "height": height})
        context.set_default_timeout(DEADLINE * 1000)
        contexts.append(context)
        page = context.new_page()
        messages: list[str] = []
        requested: list[str] = []
        page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
        page.on("request", lambda r: requested.append(r.url))
        session = Session(page, context, messages, requested)
        if role is not None:
            page.goto(stack.url + "/ui/signin")
            page.get_by_label("Token").fill(stack.token(role))
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(re.compile(r".*/ui/\?done=signed-in$"))
        return session

    yield make
    for context in contexts:
        context.close()
