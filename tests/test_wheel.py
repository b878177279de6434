"""The built wheel, installed into a fresh virtual environment: what it ships, and a
smoke test per extra.

The wheel is built once (``python -m build --wheel``, as ``make dist`` does) and installed
with ``--no-deps`` plus the core dependencies only; ``import ratemw`` and a decision are
checked there before any extra is added. Then the extras are installed one after the
other into the same environment (``pip install 'WHEEL[extra]'``, so the extras' metadata
is what is tested), each followed by a script that uses it for real: a real Redis for
``redis``, a signed token for ``jwt``, a request through each framework's adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "ratemw"
BUILD_TIMEOUT = 300.0
PIP_TIMEOUT = 300.0
RUN_TIMEOUT = 120.0
CORE_DEPS = ["pyyaml>=6.0", "google-re2>=1.1.20251105", "tomli>=2.0; python_version < '3.11'"]
OPTIONAL = ("redis", "jwt", "prometheus_client", "django", "flask", "starlette", "jinja2")


@dataclass
class Venv:
    """A fresh virtual environment holding the wheel; extras are added on demand."""

    path: Path
    wheel: Path
    installed: set[str] = field(default_factory=set)

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def pip(self, *args: str) -> None:
        done = subprocess.run(
            [self.python, "-m", "pip", "--disable-pip-version-check", "--no-input", "-q",
             "install", *args],
            capture_output=True, text=True, timeout=PIP_TIMEOUT,
        )  # fmt: skip
        assert done.returncode == 0, f"pip install {' '.join(args)}:\n{done.stderr[-3000:]}"

    def extra(self, name: str) -> None:
        if name not in self.installed:
            self.pip(f"{self.wheel}[{name}]")
            self.installed.add(name)

    def run(self, code: str, **env: str) -> str:
        """Run ``code`` in the environment, away from the source tree; its stdout."""
        done = subprocess.run(
            [self.python, "-c", textwrap.dedent(code)], cwd=self.path, capture_output=True,
            text=True, timeout=RUN_TIMEOUT, env={**_clean_env(), **env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout


def _clean_env() -> dict[str, str]:
    # Nothing of the source tree or of the test venv may leak into the fresh one.
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in drop}


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:] or done.stdout[-3000:]
    (built,) = out.glob("ratemw-*.whl")
    return built


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Venv]:
    path = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, timeout=PIP_TIMEOUT)
    env = Venv(path, wheel)
    env.pip("--no-deps", str(wheel))
    env.pip(*CORE_DEPS)
    yield env


@pytest.fixture(scope="session")
def core_report(venv: Venv) -> str:
    """What the environment says before any extra is installed."""
    return venv.run(
        """
        import importlib.util, sys
        import ratemw
        from ratemw import Limiter, RequestInfo
        rules = {"version": 1, "rules": [{"name": "login", "match": {"path": "/login"},
                 "identity": "ip", "limit": "2/minute"}]}
        limiter = Limiter(rules)
        seen = [limiter.decide(RequestInfo(path="/login", peer="198.51.100.7")).status
                for _ in range(3)]
        print("statuses", seen)
        print("from", ratemw.__file__)
        print("version", ratemw.__version__)
        print("optional", [m for m in OPTIONAL if importlib.util.find_spec(m)])
        """.replace("OPTIONAL", repr(OPTIONAL))
    )


def test_wheel_ships_lua_templates_static_and_adapters(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        f"ratemw/{path.relative_to(SRC).as_posix()}"
        for folder in ("resources/lua", "control/ui/templates", "control/ui/static")
        for path in sorted((SRC / folder).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert any(name.endswith(".lua") for name in expected)
    assert any(name.endswith(".html") for name in expected)
    missing = [name for name in expected if name not in names]
    assert missing == []
    for name in ("ratemw/py.typed", "ratemw/resources/demo.yaml", "ratemw_django/__init__.py",
                 "ratemw_flask/__init__.py", "ratemw_starlette/__init__.py"):  # fmt: skip
        assert name in names, name
    assert not any(name.startswith(("tests/", "docs/", "benchmarks/")) for name in names)


def test_core_without_any_extra(core_report: str, venv: Venv) -> None:
    import ratemw

    assert "statuses [200, 200, 429]" in core_report
    assert f"version {ratemw.__version__}" in core_report
    assert f"from {venv.path}" in core_report  # the installed wheel, not the source tree
    assert "optional []" in core_report
    # The console script of the wheel runs.
    done = subprocess.run(
        [str(venv.path / "bin" / "ratemw"), "check", "--help"], capture_output=True,
        text=True, timeout=RUN_TIMEOUT, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0 and "usage: ratemw check" in done.stdout


def test_extra_redis(core_report: str, venv: Venv, redis_url: str) -> None:
    venv.extra("redis")
    out = venv.run(
        """
        import os
        from ratemw import Limiter, RequestInfo
        rules = {"version": 1, "rules": [{"name": "login", "match": {"path": "/login"},
                 "identity": "ip", "limit": "3/minute", "lease": {"size": 1}}]}
        a = Limiter(rules, redis_url=os.environ["URL"])
        b = Limiter(rules, redis_url=os.environ["URL"])
        info = RequestInfo(path="/login", peer="198.51.100.8")
        print([x.decide(info).status for x in (a, b, a, b)])
        a.close(); b.close()
        """,
        URL=redis_url,
    )
    assert out.strip() == "[200, 200, 200, 429]"  # one limit across two limiters


def test_extra_jwt(core_report: str, venv: Venv) -> None:
    venv.extra("jwt")
    out = venv.run(
        """
        import jwt
        from ratemw import Limiter, RequestInfo
        rules = {"version": 1, "tiers": ["free", "pro"],
                 "identity": {"jwt": {"algorithms": ["HS256"], "secret_env": "JWT_SECRET"}},
                 "rules": [{"name": "s", "match": {"path": "/s"}, "identity": "user",
                            "limit": {"free": "1/minute", "pro": "3/minute"}}]}
        limiter = Limiter(rules)
        token = jwt.encode({"sub": "alice", "plan": "pro"}, "k" * 40, algorithm="HS256")
        info = RequestInfo(path="/s", peer="198.51.100.9",
                           headers={"authorization": "Bearer " + token})
        print(sum(limiter.decide(info).allowed for _ in range(5)))
        """,
        JWT_SECRET="k" * 40,
    )
    assert out.strip() == "3"  # the verified pro tier


def test_extra_prometheus(core_report: str, venv: Venv) -> None:
    venv.extra("prometheus")
    out = venv.run(
        """
        from ratemw import Limiter, RequestInfo
        from ratemw.metrics import register, render
        from prometheus_client import CollectorRegistry
        rules = {"version": 1, "rules": [{"name": "login", "match": {"path": "/login"},
                 "identity": "ip", "limit": "1/minute"}]}
        limiter = Limiter(rules)
        for _ in range(2):
            limiter.decide(RequestInfo(path="/login", peer="198.51.100.10"))
        registry = CollectorRegistry()
        register(limiter.metrics, registry)
        body, _ = render(registry)
        print(body.decode())
        """
    )
    labels = 'mode="enforce",route="/login",rule="login",tier="*",verdict="rejected"'
    assert f"ratemw_decisions_total{{{labels}}} 1.0" in out


def test_extra_django(core_report: str, venv: Venv) -> None:
    venv.extra("django")
    out = venv.run(
        """
        import django
        from django.conf import settings
        settings.configure(
            ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"],
            INSTALLED_APPS=["ratemw_django"], MIDDLEWARE=["ratemw_django.RateLimitMiddleware"],
            RATEMW={"RULES": {"version": 1, "rules": [{"name": "login",
                    "match": {"path": "/login"}, "identity": "ip", "limit": "2/minute"}]}},
        )
        django.setup()
        from django.http import HttpResponse
        from django.test import Client
        from django.urls import path
        urlpatterns = [path("login", lambda request: HttpResponse("ok"))]
        client = Client()
        print([client.get("/login").status_code for _ in range(3)])
        """
    )
    assert out.strip() == "[200, 200, 429]"


def test_extra_flask(core_report: str, venv: Venv) -> None:
    venv.extra("flask")
    out = venv.run(
        """
        from flask import Flask
        from ratemw_flask import RateMW
        app = Flask(__name__)
        app.config["RATEMW_RULES"] = {"version": 1, "rules": []}
        ratemw = RateMW(app)
        @app.post("/login")
        @ratemw.limit("2/minute", identity="ip")
        def login():
            return "ok"
        client = app.test_client()
        print([client.post("/login").status_code for _ in range(3)])
        """
    )
    assert out.strip() == "[200, 200, 429]"


_ASGI_GET = """
import asyncio

async def get(app, path):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": [(b"host", b"testserver")],
             "client": ("198.51.100.11", 5000), "server": ("testserver", 80)}
    sent = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return next(m["status"] for m in sent if m["type"] == "http.response.start")
"""


def test_extra_starlette(core_report: str, venv: Venv) -> None:
    venv.extra("starlette")
    out = venv.run(
        _ASGI_GET
        + """
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from ratemw_starlette import RateLimitMiddleware
rules = {"version": 1, "rules": [{"name": "login", "match": {"path": "/login"},
         "identity": "ip", "limit": "2/minute"}]}
app = Starlette(routes=[Route("/login", lambda request: PlainTextResponse("ok"))],
                middleware=[Middleware(RateLimitMiddleware, rules=rules)])
async def main():
    return [await get(app, "/login") for _ in range(3)]
print(asyncio.run(main()))
"""
    )
    assert out.strip() == "[200, 200, 429]"


def test_extra_control(core_report: str, venv: Venv) -> None:
    venv.extra("control")
    out = venv.run(
        _ASGI_GET
        + """
import json
from ratemw.control.app import create_app
app = create_app("sqlite:///control.db", console=False)
async def main():
    return await get(app, "/healthz"), await get(app, "/openapi.json")
print(asyncio.run(main()))
from importlib import resources
templates = resources.files("ratemw.control.ui") / "templates"
print(sorted(p.name for p in templates.iterdir() if p.name.endswith(".html"))[:1])
"""
    )
    lines = out.strip().splitlines()
    assert lines[0] == "(200, 200)"
    assert lines[1].startswith("['") and lines[1].endswith(".html']")


def test_the_flask_quickstart_in_a_fresh_venv(core_report: str, venv: Venv, tmp_path: Path) -> None:
    """docs/quickstart-flask.md from its first command: pip install 'ratemw[flask]'
    gunicorn (here: the built wheel), its two files, its gunicorn command, its curl loop."""
    from tests.docs.test_quickstart_flask import run_the_quickstart

    started = time.monotonic()
    venv.extra("flask")
    venv.pip("gunicorn")
    statuses = run_the_quickstart(venv.python, tmp_path, _clean_env())
    assert statuses == [200] * 5 + [429]
    print(f"the Flask quickstart in a fresh venv: {time.monotonic() - started:.1f} s")
