"""Path, method and host forms against real servers: whenever the protected view answers,
the rule applied.

Flask runs under gunicorn, Starlette under uvicorn and Django under ``manage.py
runserver`` (``django-admin runserver``), one process each, rules from
``tests/security/rules.yaml`` with a memory store. Requests are written byte for byte on
a socket: HTTP clients normalise paths, attackers do not. A view marks its answers with
a header (:data:`~tests.security.apps.MARKER`); "the rule applied" shows as the rule's
``RateLimit-Policy`` field.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.processes import HOST, free_port, launch, stop
from tests.security.apps import MARKER

ROOT = Path(__file__).resolve().parents[2]
START_DEADLINE = 30.0  # a loaded 2-core machine starts Python servers slowly
IO_TIMEOUT = 10.0

SERVERS = {
    "flask-gunicorn": [
        sys.executable, "-m", "gunicorn", "tests.security.apps:flask_app()",
        "-b", f"{HOST}:{{port}}", "-w", "1", "--log-level", "warning",
    ],
    "starlette-uvicorn": [
        sys.executable, "-m", "uvicorn", "--factory", "tests.security.apps:starlette_app",
        "--host", HOST, "--port", "{port}", "--log-level", "warning", "--no-access-log",
    ],
    "django-runserver": [
        sys.executable, "-m", "django", "runserver", "--noreload", f"{HOST}:{{port}}",
    ],
}  # fmt: skip

# Each is sent as POST and GET; percent-escapes are decoded by the server, raw bytes are not.
CORPUS = [
    "/login", "//login", "///login", "/./login", "/x/../login", "/../login", "/login/",
    "/login//", "/login/.", "/login/./", "/login/x/..", "/LOGIN", "/Login", "/login;x=1",
    "/login;", "/login?x", "/login?", "/login#x", "/login%3Fx", "/login%0A", "/login%0a",
    "/login%0D", "/login%0D%0A", "/login%00", "/login%09", "/login%20", "/login%0B",
    "/login%0C", "/login%1F", "/login%7F", "/login%C2%85", "/login%E2%80%A8", "/login.",
    "/%6Cogin", "/%6c%6F%67%69%6E", "/%2Flogin", "/login%2F", "/%2E/login",
    "/x/%2E%2E/login", "/%2e%2e/login", "/login%2F%2E", "/login%0A/", "/login/%0A",
    "//login%0A", "/login%250A", "/l%C3%B6gin", "/login%E2%80%8B", "/log%C4%B1n",
    "/login%FF", "/login\\", "/login%5C", "/login%09%0A",
]  # fmt: skip


@dataclass
class Answer:
    status: int
    headers: dict[str, str]


@dataclass
class Server:
    name: str
    port: int

    def send(self, method: str, target: bytes, host: bytes = b"127.0.0.1") -> Answer | None:
        """Send one request as raw bytes; ``None`` if the server closed without a reply."""
        request = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        data = b""
        with socket.create_connection((HOST, self.port), timeout=IO_TIMEOUT) as sock:
            sock.sendall(request % (method.encode(), target, host))
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        lines = head.split("\r\n")
        if not lines[0].startswith("HTTP/"):
            return None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return Answer(int(lines[0].split()[1]), headers)


@pytest.fixture(scope="module", params=sorted(SERVERS))
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    port = free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["DJANGO_SETTINGS_MODULE"] = "tests.security.django_site"
    env.pop("RATEMW_REDIS_URL", None)
    command = [part.format(port=port) for part in SERVERS[request.param]]
    log = tmp_path_factory.mktemp(request.param) / "server.log"
    process = launch(command, env, log, ROOT)
    try:
        found = Server(request.param, port)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            try:
                answer = found.send("GET", b"/health")
            except OSError:
                answer = None
            if answer is not None and answer.status == 200:
                break
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"{request.param} did not start:\n{log.read_text(errors='replace')[-3000:]}"
                )
            time.sleep(0.05)
        yield found
    finally:
        stop(process)


def _check(server: Server, method: str, target: bytes, host: bytes = b"127.0.0.1") -> bool:
    """Assert the rule applied if the view answered; whether the view answered."""
    try:
        answer = server.send(method, target, host)
    except OSError:
        return False  # refused outright (malformed request line): no view ran
    if answer is None or MARKER not in answer.headers:
        return False
    view = answer.headers[MARKER]
    assert f'"{view}"' in answer.headers.get("ratelimit-policy", ""), (
        f"{server.name}: {method} {target!r} (Host {host!r}) reached view {view} "
        f"without its rule: {answer.status} {answer.headers}"
    )
    return True


# What each server was seen to route to the view although the rule used to miss it:
# proof that the corpus reaches the gaps the canonical form closes.
KNOWN_GAPS = {
    "flask-gunicorn": ["//login", "/%2Flogin", "/login/", "/login%2F"],
    "starlette-uvicorn": ["/login%0A", "/login%0a"],
    "django-runserver": ["//login", "///login", "/login/", "/login%2F"],
}


def test_path_corpus(server: Server) -> None:
    served = set()
    for target in CORPUS:
        for method in ("POST", "GET"):
            if _check(server, method, target.encode("latin-1")):
                served.add(target)
    for raw in (b"/login\t", b"/login\x0b", b"/login\x7f", b"/login\xc2\x85", b"//login\x00"):
        _check(server, "POST", raw)
    assert "/login" in served
    assert set(KNOWN_GAPS[server.name]) <= served, sorted(served)


_ESCAPE = st.sampled_from(["/", "%2F", "/./", "/%2E/", "/x/../", "/x/%2E%2E/", "//"])
_TAIL = st.sampled_from(["", "/", "%0A", "%0D", "%00", "/.", "%2F", "%09", "%20", ";a", "?q"])


@st.composite
def _login_targets(draw: st.DrawFn) -> str:
    letters = "".join(f"%{ord(c):02X}" if draw(st.booleans()) else c for c in "login")
    return draw(_ESCAPE) + draw(st.sampled_from(["", "x/../", "./"])) + letters + draw(_TAIL)


@settings(
    max_examples=30, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip
@given(target=_login_targets())
def test_generated_paths(server: Server, target: str) -> None:
    _check(server, "POST", target.encode())


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_head_counts_as_get(server: Server, method: str) -> None:
    assert _check(server, method, b"/oracle")


@pytest.mark.parametrize(
    "host", [b"api.example.com", b"api.example.com.", b"API.Example.COM.", b"api.example.com.:80"]
)
def test_host_forms(server: Server, host: bytes) -> None:
    served = _check(server, "GET", b"/hosted", host)
    if host.rstrip(b".").lower() == b"api.example.com" or server.name != "django-runserver":
        assert served  # Django serves the absolute form too (split_domain_port)
