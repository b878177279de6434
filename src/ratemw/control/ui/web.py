"""The console's request plumbing: session, CSRF, role, bounded form, audit, answer.

A page (GET) needs a session, else it redirects to the sign-in page. An action (POST)
needs a session, a body within its cap, a valid CSRF token from the same origin and the
role the REST API's endpoint of the same operation needs; each refusal is written to
the audit log, as the REST routes do. Then it calls the same action of
:class:`~ratemw.control.service.ControlService` the REST API calls, which checks the
role again and audits the outcome with the principal. Handlers are synchronous and run
in Starlette's thread pool, rendering included.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from ratemw.control import ops_api, preview_api, rollout, versions
from ratemw.control.auth import TokenTable
from ratemw.control.errors import InvalidRequest, ServiceError
from ratemw.control.http import _read_body
from ratemw.control.service import ControlService
from ratemw.control.ui.answers import (
    NOTICES,
    TITLES,
    Answer,
    Ctx,
    Form,
    Json,
    Page,
    Redirect,
    cookie,
    safe_next,
)
from ratemw.control.ui.config import ConsoleConfig
from ratemw.control.ui.csrf import FIELD, Csrf, same_origin
from ratemw.control.ui.drafts import RuleSets
from ratemw.control.ui.render import Static, Templates
from ratemw.control.ui.session import COOKIE, Sessions

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "PERMISSIONS",
    "Answer",
    "Console",
    "Ctx",
    "Form",
    "Json",
    "Page",
    "Redirect",
    "cookie",
    "safe_next",
]

#: operation id -> permission, from the REST API's route table: one set of roles
PERMISSIONS: Mapping[str, str] = {
    **{ep.operation: ep.permission for ep in versions.ENDPOINTS},
    **{ep.operation: ep.permission for ep in rollout.ENDPOINTS},
    **{ep.operation: ep.permission for ep in ops_api.ENDPOINTS},
    **{ep.operation: ep.permission for ep in preview_api.ENDPOINTS},
}
Result = Page | Redirect | Json
View = Callable[["Console", Ctx], Result]
Action = Callable[["Console", Ctx, Form], Result]


class Console:
    """The console of one control service: its sessions, CSRF keys and templates."""

    def __init__(self, service: ControlService, tokens: TokenTable, config: ConsoleConfig):
        self.service = service
        self.tokens = tokens
        self.config = config
        self.sessions = Sessions(config.secret, config.session_seconds)
        self.csrf = Csrf(config.secret)
        self.static = Static()
        self.templates = Templates(self.static)
        self.rulesets = RuleSets(service)

    # -- who is asking -----------------------------------------------------------------

    def context(self, request: Request) -> Ctx | None:
        session = self.sessions.read(request.cookies.get(COOKIE))
        if session is None:
            return None
        principal = self.tokens.principal_of(session.digest)
        if principal is None:
            return None
        query = {k: v for k, v in request.query_params.items() if len(k) <= 64}
        params = {k: str(v) for k, v in request.path_params.items()}
        csrf = self.csrf.token(session.sid)
        return Ctx(principal, session, csrf, request.url.path, query, params)

    def own_origin(self, request: Request) -> str:
        url = request.url
        return f"{url.scheme}://{url.netloc}"

    def secure(self, request: Request) -> bool:
        return self.config.secure_cookie or request.url.scheme == "https"

    # -- answers -----------------------------------------------------------------------

    def render(self, ctx: Ctx | None, result: Result) -> Answer:
        """The status, body, media type and extra headers of a handler's result."""
        if isinstance(result, Redirect):
            to, hash_, fragment = result.to.partition("#")
            if result.done:
                to += ("&" if "?" in to else "?") + urlencode({"done": result.done})
            to += hash_ + fragment
            headers = [("Location", to), *(("Set-Cookie", c) for c in result.cookies)]
            return Answer(303, b"", "text/plain", headers)
        if isinstance(result, Json):
            return Answer(result.status, json.dumps(result.data).encode(), "application/json")
        context = {"principal": None, "csrf": "", "may": lambda permission: False,
                   "nav": "", "notice": "", "path": "", **result.context}  # fmt: skip
        if ctx is not None:
            context.update(principal=ctx.principal, csrf=ctx.csrf, may=ctx.may, path=ctx.path)
            done = ctx.arg("done")
            if done and not context["notice"]:
                context["notice"] = NOTICES.get(done, "")
        html = self.templates.render(result.template, context)
        return Answer(result.status, html.encode("utf-8"), "text/html; charset=utf-8")

    def error(self, status: int, message: str, title: str = "") -> Page:
        return Page("error.html", {"title": title or TITLES.get(status, "Error"),
                                   "message": message}, status)  # fmt: skip

    async def answer(self, ctx: Ctx | None, make: Callable[[], Result]) -> Response:
        from starlette.concurrency import run_in_threadpool

        def run() -> Answer:
            try:
                result = make()
            except ServiceError as exc:
                result = self.error(exc.status, self.service.scrub(str(exc)))
            return self.render(ctx, result)

        return (await run_in_threadpool(run)).response()

    def record(self, ctx: Ctx | None, operation: str, target: str, outcome: str,
               error: str, reason: str) -> None:  # fmt: skip
        """Audit an attempt stopped before the action, as the REST routes do."""
        who = ctx.principal if ctx is not None else None
        self.service.record(
            principal=who.name if who else "-", role=who.role if who else "-",
            action=operation, target=target, outcome=outcome,
            detail={"method": "POST", "via": "console", "error": error, "reason": reason},
        )  # fmt: skip

    # -- the two kinds of endpoint -----------------------------------------------------

    def view(self, handler: View) -> Callable[[Request], Any]:
        """A page: signed in, else to the sign-in page."""

        async def endpoint(request: Request) -> Response:
            ctx = self.context(request)
            if ctx is None:
                to = safe_next(
                    request.url.path + (f"?{request.url.query}" if request.url.query else "")
                )
                headers = [("Location", "/ui/signin?" + urlencode({"next": to}))]
                return Answer(303, b"", "text/plain", headers).response()
            return await self.answer(ctx, lambda: handler(self, ctx))

        return endpoint

    def action(
        self,
        operation: str,
        handler: Action,
        *,
        proposal: bool = False,
        audited: bool = True,
        permission: str | None = None,
    ) -> Callable[[Request], Any]:
        """A form post of ``operation``, which needs the permission of the REST endpoint
        of that operation id (else ``permission``, else ``read``); refusals are audited
        unless ``audited`` is False (a validation, which changes nothing). A proposal's
        form may be three times ``max_proposal_bytes`` (URL-encoded text); the document
        itself is held to the cap."""
        from starlette.concurrency import run_in_threadpool

        permission = PERMISSIONS.get(operation) or permission or "read"
        cap = self.config.max_proposal_bytes * 3 if proposal else self.config.max_body_bytes

        async def endpoint(request: Request) -> Response:
            ctx = self.context(request)
            target = request.url.path

            async def refuse(status: int, outcome: str, error: str, reason: str) -> Response:
                if audited:
                    await run_in_threadpool(
                        self.record, ctx, operation, target, outcome, error, reason
                    )
                return await self.answer(ctx, lambda: self.error(status, reason))

            if ctx is None:
                reason = "not signed in (or the session ended): sign in again"
                return await refuse(401, "unauthenticated", "unauthenticated", reason)
            try:
                body = await _read_body(request, cap)
            except InvalidRequest as exc:
                return await refuse(422, "refused", exc.code, str(exc))
            if body is None:
                return await refuse(413, "refused", "too_large",
                                    f"the form is larger than {cap} bytes")  # fmt: skip
            try:
                form = Form.parse(body)
            except InvalidRequest as exc:
                return await refuse(422, "refused", exc.code, str(exc))
            if not same_origin(request.headers, self.own_origin(request)):
                return await refuse(403, "refused", "csrf", "a form posted from another site")
            if not self.csrf.valid(ctx.session.sid, form.text(FIELD, max_chars=200)):
                reason = "the form's CSRF token is missing or wrong: reload the page"
                return await refuse(403, "refused", "csrf", reason)
            if not ctx.may(permission):
                return await refuse(403, "forbidden", "forbidden",
                                    f"role {ctx.principal.role} may not {permission}")  # fmt: skip

            def act() -> Result:
                try:
                    return handler(self, ctx, form)
                except ServiceError as exc:
                    # Refused before ServiceCore.act (a bad field): audited here.
                    if not exc.audited and audited:
                        self.record(ctx, operation, target, exc.outcome, exc.code, str(exc))
                    raise
                except Exception as exc:  # a bug: audited, answered 500 without a traceback
                    reason = self.service.scrub(f"{type(exc).__name__}: {exc}")
                    if audited:
                        self.record(ctx, operation, target, "failed", "internal_error", reason)
                    return self.error(500, reason)

            return await self.answer(ctx, act)

        return endpoint
