"""The REST layer the resources share: the route table entry, the parsed request, and
the wrapper that turns an entry into a Starlette route.

Before a handler runs, the wrapper checks the token and the role, bounds path ids and
reads the body up to its cap (413 past it, counted as it streams). Every error is an
``application/problem+json`` answer (RFC 9457); refused changes are audited. Starlette
is imported when a route is built, never when this module is imported. Handlers are
synchronous (SQLite, the publishers and Redis block) and run in Starlette's thread pool.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ratemw.control.auth import Principal, TokenTable, bearer_token
from ratemw.control.core import ServiceCore
from ratemw.control.errors import InvalidRequest, NotFound, ServiceError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

__all__ = ["MAX_ID", "MIN_ID", "PROBLEM", "Call", "Endpoint", "http_error", "problem", "route"]

# SQLite's INTEGER (and PostgreSQL's BIGINT): a larger id names nothing stored.
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
PROBLEM = "application/problem+json"
_INTEGER = re.compile(r"[+-]?[0-9]{1,20}")  # ASCII only: int() also takes "١٢" and "1_0"
_TITLES = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content",
    500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
}  # fmt: skip

S = TypeVar("S", bound=ServiceCore, contravariant=True)


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the caller, path and query parameters, the raw body."""

    principal: Principal
    params: Mapping[str, Any]
    query: Mapping[str, str]
    body: bytes
    content_type: str

    def json(self) -> dict[str, Any]:
        if not self.body.strip():
            return {}
        try:
            data = json.loads(self.body)
        except ValueError as exc:
            raise InvalidRequest(f"the body is not JSON: {exc}") from None
        except RecursionError:
            raise InvalidRequest("the body is not JSON: nested too deeply") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data

    def text(self, data: Mapping[str, Any], key: str, default: str = "") -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise InvalidRequest(f"{key!r} must be a string")
        return value

    def int_query(self, key: str, default: int | None) -> int | None:
        """The query parameter ``key`` as an integer (ASCII digits, within a 64-bit
        signed integer); raises :class:`InvalidRequest` otherwise."""
        raw = self.query.get(key)
        if raw is None:
            return default
        value = _integer(raw)
        if value is None or not MIN_ID <= value <= MAX_ID:
            raise InvalidRequest(
                f"query parameter {key!r} must be an integer from {MIN_ID} to {MAX_ID}"
            )
        return value

    def id_query(self, key: str) -> int | None:
        """A version id in the query: None when absent, 422 when not an integer, 404
        (:class:`NotFound`) when no stored version can have it."""
        raw = self.query.get(key)
        return None if raw is None else _path_id(key, raw)


@dataclass(frozen=True, slots=True)
class Endpoint(Generic[S]):
    """One operation: route, role, handler and what the OpenAPI document says of it.

    ``handler(service, call) -> (status, JSON payload)`` takes the resource's actions
    (``S``), parses ``call`` and calls one action; it raises a
    :class:`~ratemw.control.errors.ServiceError` to refuse.
    """

    method: str
    path: str  # Starlette syntax: /v1/versions/{id:int}
    operation: str
    permission: str  # a key of ratemw.control.auth.PERMISSIONS, checked before the body
    summary: str
    handler: Callable[[S, Call], tuple[int, Any]]
    ok: tuple[int, str]  # status, response schema ("" for 204: no body)
    body: str | None = None  # request schema
    query: tuple[tuple[str, str, str], ...] = ()  # name, type, description
    errors: tuple[int, ...] = ()
    body_required: bool = False
    document_body: bool = False  # a rules document: YAML or TOML too, --max-proposal-bytes


def _integer(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


def _path_id(name: str, text: str) -> int:
    """A path id: 422 when it is not an integer, 404 when no stored row can have it."""
    value = _integer(text)
    if value is None:
        raise InvalidRequest(f"path parameter {name!r} must be an integer")
    if not MIN_ID <= value <= MAX_ID:
        raise NotFound(f"no version {text}")
    return value


def problem(status: int, code: str, detail: str, **extra: Any) -> Response:
    """An RFC 9457 problem (``status``, ``title``) with our ``error`` and ``detail``."""
    from starlette.responses import JSONResponse

    headers = {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="ratemw-control"'
    body = {"error": code, "detail": detail, "status": status,
            "title": _TITLES.get(status, "Error"), **extra}  # fmt: skip
    return JSONResponse(body, status, headers, media_type=PROBLEM)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own answers (no such route, method not allowed) as problems too."""
    from starlette.exceptions import HTTPException

    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = exc.detail if isinstance(exc, HTTPException) else "internal error"
    return problem(status, code, str(detail))


def route(
    ep: Endpoint[S],
    service: S,
    tokens: TokenTable,
    *,
    max_body_bytes: int,
    max_proposal_bytes: int,
) -> Route:
    """The Starlette route of ``ep``: authenticate, authorize, parse, call, render."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    cap = max_proposal_bytes if ep.document_body else max_body_bytes
    ids = re.findall(r"\{(\w+):int\}", ep.path)

    async def refused(
        target: str, who: Principal | None, outcome: str, detail: dict[str, Any]
    ) -> None:
        await run_in_threadpool(
            service.record,
            principal=who.name if who else "-",
            role=who.role if who else "-",
            action=ep.operation,
            target=target,
            outcome=outcome,
            detail={"method": ep.method, **detail},
        )

    async def endpoint(request: Request) -> Response:
        target = request.url.path
        token = bearer_token(request.headers.get("authorization"))
        principal = tokens.authenticate(token)
        # The role is checked here too, before the body is read: the action checks it
        # again (ServiceCore.act), for callers that are not this route.
        if principal is None or not principal.may(ep.permission):
            missing = principal is None
            reason = (
                "no bearer token" if token is None and missing
                else "unknown token" if missing
                else f"role {principal.role} may not {ep.permission}"  # type: ignore[union-attr]
            )  # fmt: skip
            outcome = "unauthenticated" if missing else "forbidden"
            await refused(target, principal, outcome, {"reason": reason})
            if missing:
                return problem(401, "unauthenticated", reason)
            return problem(403, "forbidden", reason)
        try:
            params: dict[str, Any] = dict(request.path_params)
            for name in ids:
                params[name] = _path_id(name, params[name])
            body = b""
            if ep.body is not None:
                read = await _read_body(request, cap)
                if read is None:
                    reason = f"the request body is larger than {cap} bytes"
                    detail = {"error": "too_large", "reason": reason, "limit_bytes": cap}
                    await refused(target, principal, "refused", detail)
                    return problem(413, "too_large", reason, limit_bytes=cap)
                body = read
            call = Call(
                principal, params, dict(request.query_params), body,
                request.headers.get("content-type", ""),
            )  # fmt: skip
            status, payload = await run_in_threadpool(ep.handler, service, call)
        except ServiceError as exc:
            # A change refused before ServiceCore.act (a bad id, body or parameter) is
            # audited here; reads are not audited, refused or not.
            if not exc.audited and ep.method != "GET":
                detail = {"error": exc.code, "reason": str(exc)}
                await refused(target, principal, exc.outcome, detail)
            extra = service.scrub_detail(exc.extra)
            return problem(exc.status, exc.code, service.scrub(str(exc)), **extra)
        except Exception as exc:  # a bug or a broken database: a problem, not a traceback
            reason = service.scrub(f"{type(exc).__name__}: {exc}")
            if ep.method != "GET":
                detail = {"error": "internal_error", "reason": reason}
                await refused(target, principal, "failed", detail)
            return problem(500, "internal_error", reason)
        if status == 204:  # RFC 9110 15.3.5: no content, so no JSON body either
            return Response(status_code=204)
        return JSONResponse(payload, status)

    path = re.sub(r"\{(\w+):int\}", r"{\1}", ep.path)  # parsed and bounded above
    return Route(path, endpoint, methods=[ep.method], name=ep.operation)


async def _read_body(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed ``cap`` bytes: a declared
    Content-Length first, then the bytes counted as they stream in (never buffered
    beyond the cap)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        size = _integer(declared.strip())
        if size is None or size < 0:
            raise InvalidRequest("the Content-Length header is not a byte count")
        if size > cap:
            return None
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
