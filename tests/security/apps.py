"""The apps the path, method and host forms are sent to (tests/security/test_forms.py).

Each protected view answers with :data:`MARKER` in a response header, so that a test can
tell "the view answered" from a redirect, a 404 or a 405, even for ``HEAD``. The routes
are written as lenient as an application might write them (Flask ``strict_slashes=False``).
"""

from __future__ import annotations

from pathlib import Path

RULES = Path(__file__).resolve().parent / "rules.yaml"
MARKER = "x-protected-view"
PROTECTED = ("login", "oracle", "hosted")


def flask_app() -> object:
    from flask import Flask

    from ratemw_flask import RateMW

    app = Flask(__name__)
    app.config["RATEMW_RULES"] = RULES
    for name in PROTECTED:

        def view(name: str = name) -> tuple[str, int, dict[str, str]]:
            return "view", 200, {MARKER: name}

        app.add_url_rule(f"/{name}", name, view, methods=["GET", "POST"], strict_slashes=False)
    app.add_url_rule("/health", "health", lambda: "ok")
    RateMW().init_app(app)
    return app


def starlette_app() -> object:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from ratemw_starlette import RateLimitMiddleware

    def view(name: str) -> Route:
        async def endpoint(request: Request) -> PlainTextResponse:
            return PlainTextResponse("view", headers={MARKER: name})

        return Route(f"/{name}", endpoint, methods=["GET", "POST"])

    async def health(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[*(view(n) for n in PROTECTED), Route("/health", health)],
        middleware=[Middleware(RateLimitMiddleware, rules=str(RULES))],
    )
