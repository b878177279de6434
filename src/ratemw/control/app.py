"""The control plane's REST API: a Starlette app built from the resources' route tables.

Each resource module holds its actions and, beside them, the route table that calls
them: :mod:`~ratemw.control.versions`, :mod:`~ratemw.control.rollout`,
:mod:`~ratemw.control.audit_api` and :mod:`~ratemw.control.ops_api`. This module
joins the tables (:data:`ENDPOINTS`), builds the routes (:func:`ratemw.control.http.route`
checks the token, the role and the body before a handler runs) and serves the OpenAPI
3.1 document of the same table at ``/openapi.json``, and mounts the console at ``/ui``
(:mod:`ratemw.control.ui`). Starlette is imported when :func:`create_app` runs, never
when this module is imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratemw._deps import require
from ratemw.control import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_PROPOSAL_BYTES,
    ControlError,
    audit_api,
    openapi,
    ops_api,
    preview_api,
    rollout,
    versions,
)
from ratemw.control.auth import TokenTable
from ratemw.control.core import Publisher, ServiceCore
from ratemw.control.db import Database, open_database
from ratemw.control.http import Call, Endpoint, http_error, route
from ratemw.control.service import ControlService

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from ratemw.control.ui import ConsoleConfig

__all__ = ["ENDPOINTS", "create_app", "openapi_document"]


def _whoami(svc: ServiceCore, call: Call) -> tuple[int, Any]:
    return 200, {"principal": call.principal.name, "role": call.principal.role}


_WHOAMI = Endpoint(
    "GET", "/v1/whoami", "whoami", "read", "The caller's principal and role", _whoami,
    (200, "Whoami"),
)  # fmt: skip
ENDPOINTS: tuple[Endpoint[ControlService], ...] = (
    *versions.ENDPOINTS,
    *rollout.ENDPOINTS,
    *preview_api.ENDPOINTS,
    *audit_api.ENDPOINTS,
    _WHOAMI,
    *ops_api.ENDPOINTS,
)


def openapi_document(endpoints: Sequence[Endpoint[Any]] = ENDPOINTS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints`` (by default, every route served)."""
    return openapi.openapi_document(endpoints)


def create_app(
    db_url: str | Database,
    publish_targets: Sequence[str] = (),
    tokens: TokenTable | None = None,
    *,
    required_approvals: int = 1,
    publisher: Publisher | None = None,
    ops_redis: str | None = None,
    ops_app: str = "default",
    max_proposal_bytes: int = DEFAULT_MAX_PROPOSAL_BYTES,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    console: ConsoleConfig | bool = True,
    traffic: str | Path | None = None,
    max_traffic_bytes: int = preview_api.DEFAULT_MAX_TRAFFIC_BYTES,
) -> Starlette:
    """Build the control-plane app on ``db_url`` (migrated now), publishing to targets.

    ``tokens`` lists who may call it (none: every API call gets 401). ``ops_redis`` is
    the limiters' Redis and ``ops_app`` their key namespace, for the operations
    endpoints (503 without it). A proposal's body may hold ``max_proposal_bytes``, any
    other body ``max_body_bytes``; a larger one is refused with 413 before more of it
    is read. The console (docs/console.md) is served at ``/ui/``: ``console`` is its
    :class:`~ratemw.control.ui.ConsoleConfig`, ``True`` for one from the environment
    (``RATEMW_CONSOLE_SECRET``, ``RATEMW_CONSOLE_SECURE_COOKIE``), ``False`` for none.
    ``traffic`` is the recording that previews replay (docs/replay.md), read only when
    its files hold at most ``max_traffic_bytes``.
    Raises :class:`ratemw.control.ControlError` for a bad database or Redis
    URL, a missing driver or a cap below 1, and
    :class:`ratemw.errors.MissingDependency` without Starlette (or redis-py, with
    ``ops_redis``).
    """
    require("starlette", extra="starlette", purpose="ratemw control")
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse
    from starlette.routing import BaseRoute, Route

    if max_proposal_bytes < 1 or max_body_bytes < 1 or max_traffic_bytes < 1:
        raise ControlError("the body and recording size limits must be at least 1 byte")
    owns_db = isinstance(db_url, str)
    db = open_database(db_url) if isinstance(db_url, str) else db_url
    try:
        service = ControlService(
            db, publish_targets, required_approvals=required_approvals, publisher=publisher,
            ops_redis=ops_redis, ops_app=ops_app, traffic=traffic,
            max_traffic_bytes=max_traffic_bytes,
        )  # fmt: skip
    except BaseException:
        if owns_db:
            db.close()
        raise
    table = tokens if tokens is not None else TokenTable()
    document = openapi_document()

    async def serve_openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes: list[BaseRoute] = [
        route(ep, service, table, max_body_bytes=max_body_bytes,
              max_proposal_bytes=max_proposal_bytes)
        for ep in ENDPOINTS
    ]  # fmt: skip
    routes += [Route("/openapi.json", serve_openapi, methods=["GET"]), Route("/healthz", health)]
    if console is not False:
        from ratemw.control.ui import ConsoleConfig, console_mount

        try:
            config = (
                console
                if isinstance(console, ConsoleConfig)
                else ConsoleConfig.from_env(
                    os.environ, max_body_bytes=max_body_bytes, max_proposal_bytes=max_proposal_bytes
                )
            )
            routes.append(console_mount(service, table, config))
        except BaseException:
            if owns_db:
                db.close()
            raise

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close_ops()
            if owns_db:
                db.close()

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.service = service
    return app
