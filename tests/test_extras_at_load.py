"""Rules that need an extra fail when they are loaded, naming it, not on every request
(issue #16, bug 7). Each case runs in a child interpreter where ``import jwt`` fails, as
without ``ratemw[jwt]``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HINT = "pip install 'ratemw[jwt]'"
PRELUDE = """
import sys
sys.modules["jwt"] = None  # what a missing PyJWT looks like to `import jwt`
RULES = {
    "version": 1,
    "identity": {"jwt": {"algorithms": ["HS256"], "secret_env": "RATEMW_JWT_SECRET"}},
    "rules": [{"name": "login", "match": {"path": "/login"}, "limit": "5/minute"}],
}
"""


def run(code: str) -> subprocess.CompletedProcess[str]:
    script = PRELUDE + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "RATEMW_JWT_SECRET": "s3cret", "PYTHONPATH": str(ROOT)},
    )


def test_a_limiter_refuses_the_rules_naming_the_extra() -> None:
    done = run(
        """
        from ratemw import ConfigError, Limiter, MissingDependency
        try:
            Limiter(RULES)
        except ConfigError as exc:
            assert isinstance(exc, MissingDependency)
            print("refused:", exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "refused:" in done.stdout and HINT in done.stdout


def test_a_live_version_needing_the_extra_is_refused_and_the_last_good_kept() -> None:
    done = run(
        """
        from ratemw import ConfigError, Limiter, RequestInfo
        limiter = Limiter({"version": 1, "rules": RULES["rules"]})
        try:
            limiter.update_rules(RULES)
        except ConfigError as exc:
            print("refused:", exc)
        info = RequestInfo(path="/login", peer="198.51.100.1")
        print([limiter.decide(info).status for _ in range(6)])
        """
    )
    assert done.returncode == 0, done.stderr
    assert HINT in done.stdout
    assert "[200, 200, 200, 200, 200, 429]" in done.stdout


def test_starlette_fails_the_servers_start_up_not_each_request() -> None:
    # A real uvicorn server, lifespan "auto" (its default): the start-up fails and the
    # server exits instead of answering 500 to every request.
    done = run(
        """
        import logging
        import uvicorn
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route
        from ratemw_starlette import RateLimitMiddleware

        async def login(request):
            return PlainTextResponse("ok")

        app = Starlette(
            routes=[Route("/login", login)],
            middleware=[Middleware(RateLimitMiddleware, rules=RULES)],
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="auto",
                                log_level="info")
        uvicorn.Server(config).run()  # exits with uvicorn's start-up failure status
        print("served")
        """
    )
    assert done.returncode != 0 and "served" not in done.stdout, done.stdout + done.stderr
    assert "Application startup failed" in done.stderr
    assert HINT in done.stderr


def test_flask_fails_at_init_app() -> None:
    done = run(
        """
        from flask import Flask
        from ratemw import MissingDependency
        from ratemw_flask import RateMW
        app = Flask(__name__)
        app.config["RATEMW_RULES"] = RULES
        try:
            RateMW(app)
        except MissingDependency as exc:
            print("refused:", exc)
        """
    )
    assert done.returncode == 0, done.stderr
    assert HINT in done.stdout


def test_django_check_reports_it_as_e001() -> None:
    done = run(
        """
        import django
        from django.conf import settings
        settings.configure(
            SECRET_KEY="x", INSTALLED_APPS=["ratemw_django"], ROOT_URLCONF=__name__,
            MIDDLEWARE=["ratemw_django.RateLimitMiddleware"], DATABASES={},
            RATEMW={"RULES": RULES, "WORKERS": 1},
        )
        urlpatterns = []
        django.setup()
        from django.core import checks
        for message in checks.run_checks(tags=["ratemw"]):
            print(message.id, message.msg)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "ratemw.E001" in done.stdout and HINT in done.stdout
