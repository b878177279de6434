"""The console's route table, mounted at ``/ui`` by :func:`ratemw.control.app.create_app`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ratemw.control.auth import TokenTable
from ratemw.control.service import ControlService
from ratemw.control.ui import (
    pages_audit,
    pages_auth,
    pages_edit,
    pages_ops,
    pages_preview,
    pages_versions,
)
from ratemw.control.ui.config import ConsoleConfig
from ratemw.control.ui.pages_overview import overview_page
from ratemw.control.ui.web import Console

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Mount

__all__ = ["console_mount"]


def console_mount(service: ControlService, tokens: TokenTable, config: ConsoleConfig) -> Mount:
    """The console's routes under ``/ui`` (raises MissingDependency without Jinja2)."""
    from starlette.routing import Mount, Route, Router

    c = Console(service, tokens, config)

    def bound(
        handler: Callable[[Console, Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await handler(c, request)

        return endpoint

    async def not_found(scope: object, receive: object, send: object) -> None:
        from starlette.requests import Request

        request = Request(scope)  # type: ignore[arg-type]
        ctx = c.context(request)
        response = c.render(ctx, c.error(404, "There is no such page.")).response()
        await response(scope, receive, send)  # type: ignore[arg-type]

    get, post = ["GET"], ["POST"]
    routes = [
        Route("/", c.view(overview_page), methods=get),
        Route("/signin", bound(pages_auth.sign_in_page), methods=get),
        Route("/signin", bound(pages_auth.sign_in), methods=post),
        Route("/signout", c.action("console.signout", pages_auth.sign_out, audited=False),
              methods=post),
        Route("/static/{name}", bound(pages_auth.serve_static), methods=get),
        Route("/versions", c.view(pages_versions.versions_page), methods=get),
        Route("/versions/{id}", c.view(pages_versions.version_page), methods=get),
        Route("/versions/{id}/approve", c.action("approveVersion", pages_versions.approve),
              methods=post),
        Route("/versions/{id}/preview", c.action("previewVersion", pages_preview.run_preview),
              methods=post),
        Route("/versions/{id}/preview.svg", bound(pages_preview.preview_plot), methods=get),
        Route("/versions/{id}/rollout", c.action("rolloutVersion", pages_versions.roll_out),
              methods=post),
        Route("/rollback", c.action("rollback", pages_versions.roll_back), methods=post),
        Route("/edit", c.view(pages_edit.edit_page), methods=get),
        Route("/edit/check", c.action("checkDraft", pages_edit.review, proposal=True,
                                      audited=False, permission="propose"), methods=post),
        Route("/edit/propose", c.action("proposeVersion", pages_edit.propose, proposal=True),
              methods=post),
        Route("/edit/rule", c.view(pages_edit.rule_page), methods=get),
        Route("/edit/rule", c.action("checkRule", pages_edit.review_rule, audited=False,
                                     permission="propose"), methods=post),
        Route("/edit/lists", c.view(pages_edit.lists_page), methods=get),
        Route("/edit/lists", c.action("checkLists", pages_edit.review_lists, audited=False,
                                      permission="propose", proposal=True), methods=post),
        Route("/audit", c.view(pages_audit.audit_page), methods=get),
        Route("/audit/verify", c.view(pages_audit.verify_page), methods=get),
        Route("/ops", c.view(pages_ops.ops_page), methods=get),
        Route("/ops/brownout", c.action("setBrownout", pages_ops.set_brownout), methods=post),
        Route("/ops/brownout/clear", c.action("clearBrownout", pages_ops.clear_brownout),
              methods=post),
        Route("/ops/bans", c.action("addBan", pages_ops.add_ban), methods=post),
        Route("/ops/bans/remove", c.action("removeBan", pages_ops.remove_ban), methods=post),
    ]  # fmt: skip
    return Mount("/ui", app=Router(routes=routes, default=not_found), name="console")
