"""Signing in with a control token, signing out, and the static files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ratemw.control.auth import token_digest
from ratemw.control.errors import InvalidRequest
from ratemw.control.http import _read_body
from ratemw.control.ui.csrf import FIELD, SIGNIN_COOKIE, same_origin
from ratemw.control.ui.session import COOKIE
from ratemw.control.ui.web import Answer, Console, Ctx, Form, Page, Redirect, cookie, safe_next

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["serve_static", "sign_in", "sign_in_page", "sign_out"]

_MAX_TOKEN_CHARS = 4096
_SIGNIN_SECONDS = 3600


def _form(console: Console, request: Request, message: str = "", status: int = 200) -> Answer:
    """The sign-in form, with a fresh nonce cookie its CSRF token is bound to."""
    nonce = console.csrf.nonce()
    page = Page("signin.html", {
        "title": "Sign in", "message": message,
        "next": safe_next(request.query_params.get("next")),
        "signin_csrf": console.csrf.token(f"signin:{nonce}"),
    }, status)  # fmt: skip
    answer = console.render(None, page)
    value = cookie(SIGNIN_COOKIE, nonce, _SIGNIN_SECONDS, secure=console.secure(request))
    answer.headers.append(("Set-Cookie", value))
    return answer


async def sign_in_page(console: Console, request: Request) -> Response:
    if console.context(request) is not None:
        return console.render(
            None, Redirect(safe_next(request.query_params.get("next")))
        ).response()
    return _form(console, request).response()


async def sign_in(console: Console, request: Request) -> Response:
    """Check the token; a wrong one is audited and answered 401 with the form again."""
    from starlette.concurrency import run_in_threadpool

    async def refused(reason: str, status: int, shown: str) -> Response:
        await run_in_threadpool(
            console.service.record, principal="-", role="-", action="console.signin",
            target="/ui/signin", outcome="unauthenticated" if status == 401 else "refused",
            detail={"method": "POST", "via": "console", "reason": reason},
        )  # fmt: skip
        return _form(console, request, shown, status).response()

    try:
        body = await _read_body(request, console.config.max_body_bytes)
        form = Form.parse(body) if body is not None else None
    except InvalidRequest as exc:
        return await refused(str(exc), 422, "The form could not be read.")
    if form is None:
        return await refused("the form is too large", 413, "The form is too large.")
    nonce = request.cookies.get(SIGNIN_COOKIE, "")[:64]
    if (
        not nonce
        or not same_origin(request.headers, console.own_origin(request))
        or not console.csrf.valid(f"signin:{nonce}", form.text(FIELD, max_chars=200))
    ):
        return await refused("missing or wrong CSRF token", 403,
                             "The sign-in form expired: try again.")  # fmt: skip
    token = form.raw("token", max_chars=_MAX_TOKEN_CHARS).strip()
    principal = console.tokens.authenticate(token) if token else None
    if principal is None:
        reason = "no token" if not token else "unknown token"
        return await refused(reason, 401, "That token is not valid.")
    _, value = console.sessions.issue(token_digest(token))
    await run_in_threadpool(
        console.service.record, principal=principal.name, role=principal.role,
        action="console.signin", target="/ui/signin", outcome="ok",
        detail={"method": "POST", "via": "console"},
    )  # fmt: skip
    secure = console.secure(request)
    done = Redirect(safe_next(form.text("next", max_chars=400)), "signed-in", (
        cookie(COOKIE, value, console.config.session_seconds, secure=secure),
        cookie(SIGNIN_COOKIE, "", 0, secure=secure),
    ))  # fmt: skip
    return console.render(None, done).response()


def sign_out(console: Console, ctx: Ctx, form: Form) -> Redirect:
    """End the session (revoked: a copy of the cookie stops working too)."""
    console.sessions.revoke(ctx.session)
    console.service.record(
        principal=ctx.principal.name, role=ctx.principal.role, action="console.signout",
        target="/ui/signout", outcome="ok", detail={"method": "POST", "via": "console"},
    )  # fmt: skip
    secure = console.config.secure_cookie is True
    return Redirect("/ui/signin", cookies=(cookie(COOKIE, "", 0, secure=secure),))


async def serve_static(console: Console, request: Request) -> Response:
    """Our stylesheet and script only; anything else is 404."""
    found = console.static.files.get(str(request.path_params.get("name", "")))
    if found is None:
        answer = console.render(None, console.error(404, "No such file."))
        return answer.response()
    body, media = found
    response = Answer(200, body, media).response()
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response
