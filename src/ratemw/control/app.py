"""The control plane's REST API: a Starlette app built from one route table.

The same table (:data:`ENDPOINTS`) routes requests, checks roles and writes the OpenAPI
3 document served at ``/openapi.json``; the handlers of the operations endpoints
(brownout, bans, top offenders) live in :mod:`ratemw.control.ops_api`. Starlette is
imported when :func:`create_app` runs, never when this module is imported. Handlers are
synchronous (SQLite, the publishers and Redis block) and run in Starlette's thread pool.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratemw import __version__ as _ratemw_version
from ratemw._deps import require
from ratemw.control import ControlError, ops_api
from ratemw.control.audit import verify
from ratemw.control.auth import PERMISSIONS, Principal, TokenTable, bearer_token
from ratemw.control.db import Database, open_database
from ratemw.control.service import (
    ControlService,
    InvalidRequest,
    Publisher,
    ServiceError,
    problem_json,
)

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["ENDPOINTS", "Call", "Endpoint", "create_app", "openapi_document"]

_RAW_TYPES = {
    "application/yaml": "yaml", "application/x-yaml": "yaml", "text/yaml": "yaml",
    "text/x-yaml": "yaml", "application/toml": "toml", "text/toml": "toml",
}  # fmt: skip


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
        if not isinstance(data, dict):
            raise InvalidRequest("the body must be a JSON object")
        return data

    def text(self, data: Mapping[str, Any], key: str, default: str = "") -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise InvalidRequest(f"{key!r} must be a string")
        return value

    def int_query(self, key: str, default: int | None) -> int | None:
        raw = self.query.get(key)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise InvalidRequest(f"query parameter {key!r} must be an integer") from None


Handler = Callable[[ControlService, Call], tuple[int, Any]]


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One operation: route, role, handler and what the OpenAPI document says of it."""

    method: str
    path: str  # Starlette syntax: /v1/versions/{id:int}
    operation: str
    permission: str  # a key of ratemw.control.auth.PERMISSIONS
    summary: str
    handler: Handler
    ok: tuple[int, str]  # status, response schema ("" for 204: no body)
    body: str | None = None  # request schema
    query: tuple[tuple[str, str, str], ...] = ()  # name, type, description
    errors: tuple[int, ...] = ()


# -- handlers ---------------------------------------------------------------------------


def _list_versions(svc: ControlService, call: Call) -> tuple[int, Any]:
    limit = max(1, min(call.int_query("limit", 50) or 50, 500))
    versions = svc.list_versions(limit=limit, before=call.int_query("before", None))
    return 200, {"versions": [v.to_json() for v in versions]}


def _propose(svc: ControlService, call: Call) -> tuple[int, Any]:
    media = call.content_type.split(";", 1)[0].strip().lower()
    if media in _RAW_TYPES:
        document, fmt = call.body, _RAW_TYPES[media]
        message = call.query.get("message", "")
    else:
        data = call.json()
        if not isinstance(data.get("document"), str):
            raise InvalidRequest("'document' (the rules file's text) is required")
        document = call.text(data, "document").encode("utf-8")
        fmt, message = call.text(data, "format", "yaml"), call.text(data, "message")
    version, warnings = svc.propose(call.principal, document, fmt, message)
    return 201, {"version": version.to_json(), "warnings": [problem_json(p) for p in warnings]}


def _get_version(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, {"version": svc.get_version(call.params["id"]).to_json(document=True)}


def _approve(svc: ControlService, call: Call) -> tuple[int, Any]:
    comment = call.text(call.json(), "comment")
    return 200, {"version": svc.approve(call.principal, call.params["id"], comment).to_json()}


def _rollout(svc: ControlService, call: Call) -> tuple[int, Any]:
    data = call.json()
    stage = call.text(data, "stage")
    deployment = svc.rollout(call.principal, call.params["id"], stage, data.get("percent"))
    return 200, {"deployment": deployment.to_json()}


def _rollback(svc: ControlService, call: Call) -> tuple[int, Any]:
    reason = call.text(call.json(), "reason")
    return 200, {"deployment": svc.rollback(call.principal, reason).to_json()}


def _diff(svc: ControlService, call: Call) -> tuple[int, Any]:
    old, new = call.int_query("from", None), call.int_query("to", None)
    if old is None or new is None:
        raise InvalidRequest("query parameters 'from' and 'to' (version ids) are required")
    return 200, svc.diff(old, new)


def _status(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, svc.status()


def _deployments(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, {"deployments": [d.to_json() for d in svc.deployments()]}


def _audit(svc: ControlService, call: Call) -> tuple[int, Any]:
    after = call.int_query("after", 0) or 0
    limit = max(1, min(call.int_query("limit", 100) or 100, 1000))
    return 200, {"entries": [e.to_json() for e in svc.audit.entries(after=after, limit=limit)]}


def _verify(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, verify(svc.db).to_json()


def _whoami(svc: ControlService, call: Call) -> tuple[int, Any]:
    return 200, {"principal": call.principal.name, "role": call.principal.role}


_PAGE = (("limit", "integer", "at most this many (1..500, default 50)"),
         ("before", "integer", "only versions with a smaller id"))  # fmt: skip
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("GET", "/v1/versions", "listVersions", "read", "List versions, newest first",
             _list_versions, (200, "VersionList"), query=_PAGE),
    Endpoint("POST", "/v1/versions", "proposeVersion", "propose",
             "Propose a rules document (validated; 422 lists every problem with its line)",
             _propose, (201, "Proposed"), body="Proposal", errors=(422,)),
    Endpoint("GET", "/v1/versions/{id:int}", "getVersion", "read",
             "One version with its document", _get_version, (200, "VersionDocument"),
             errors=(404,)),
    Endpoint("POST", "/v1/versions/{id:int}/approvals", "approveVersion", "approve",
             "Approve a version (never by its author)", _approve, (200, "VersionOnly"),
             body="Approval", errors=(404, 409)),
    Endpoint("POST", "/v1/versions/{id:int}/rollout", "rolloutVersion", "deploy",
             "Publish a version at a stage: shadow, percent (enforce_percent) or enforce",
             _rollout, (200, "DeploymentOnly"), body="Rollout", errors=(404, 409, 422, 502)),
    Endpoint("POST", "/v1/rollback", "rollback", "deploy",
             "Republish the enforced version before what is live", _rollback,
             (200, "DeploymentOnly"), body="Rollback", errors=(409, 502)),
    Endpoint("GET", "/v1/diff", "diffVersions", "read", "Diff two versions", _diff,
             (200, "Diff"),
             query=(("from", "integer", "the older version id"),
                    ("to", "integer", "the newer version id")),
             errors=(404, 422)),
    Endpoint("GET", "/v1/status", "status", "read", "What is live and what is enforced",
             _status, (200, "Status")),
    Endpoint("GET", "/v1/deployments", "listDeployments", "read", "Every publication",
             _deployments, (200, "DeploymentList")),
    Endpoint("GET", "/v1/audit", "readAudit", "read", "Read the audit log, oldest first",
             _audit, (200, "AuditList"),
             query=(("after", "integer", "only entries with a larger seq"),
                    ("limit", "integer", "at most this many (1..1000, default 100)"))),
    Endpoint("GET", "/v1/audit/verify", "verifyAudit", "read",
             "Recompute the audit hash chain", _verify, (200, "Verification")),
    Endpoint("GET", "/v1/whoami", "whoami", "read", "The caller's principal and role",
             _whoami, (200, "Whoami")),
    # operations: the limiters' Redis (--ops-redis); 503 without it, 502 when it fails
    Endpoint("GET", "/v1/brownout", "getBrownout", "read", "The brownout in force, or null",
             ops_api.get_brownout, (200, "BrownoutState"), errors=(502, 503)),
    Endpoint("PUT", "/v1/brownout", "setBrownout", "deploy",
             "Scale limits down for a while (replaces the brownout in force)",
             ops_api.put_brownout, (200, "BrownoutOnly"), body="BrownoutRequest",
             errors=(422, 502, 503)),
    Endpoint("DELETE", "/v1/brownout", "clearBrownout", "deploy", "End the brownout now",
             ops_api.delete_brownout, (200, "Cleared"), errors=(502, 503)),
    Endpoint("GET", "/v1/bans", "listBans", "read", "Running bans, soonest end first",
             ops_api.get_bans, (200, "BanList"), errors=(502, 503)),
    Endpoint("POST", "/v1/bans", "addBan", "deploy",
             "Ban an identity from a rule for a while", ops_api.post_ban, (201, "BanOnly"),
             body="BanRequest", errors=(422, 502, 503)),
    Endpoint("DELETE", "/v1/bans/{rule}/{digest}", "removeBan", "deploy",
             "Lift a ban now (the digest as GET /v1/bans shows it)", ops_api.delete_ban,
             (204, ""), errors=(404, 502, 503)),
    Endpoint("GET", "/v1/top", "topOffenders", "read",
             "The fleet's most rejected identities per rule", ops_api.get_top,
             (200, "TopOffenders"),
             query=(("rule", "string", "only this rule"),
                    ("minutes", "integer",
                     f"look back this far (1..{ops_api.MAX_TOP_MINUTES}, default 5)"),
                    ("n", "integer",
                     f"identities per rule (1..{ops_api.MAX_TOP_N}, default 20)")),
             errors=(502, 503)),
)  # fmt: skip
# A request body is optional except for these operations.
_BODY_REQUIRED = frozenset({"proposeVersion", "setBrownout", "addBan"})


# -- OpenAPI ----------------------------------------------------------------------------


def _obj(required: Sequence[str] = (), **props: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    return out


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


_S, _I, _N, _B = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {"type": "boolean"}
_STAGE = {"type": "string", "enum": ["shadow", "percent", "enforce"]}
_FACTOR = {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
           "description": "limits are multiplied by it: 0.5 halves them"}  # fmt: skip
_SECONDS = {"type": "number", "exclusiveMinimum": 0}
_VERSION_FIELDS = {
    "id": _I, "digest": _S, "format": {"type": "string", "enum": ["yaml", "json", "toml"]},
    "author": _S, "message": _S, "created_at": _S,
    "status": {"type": "string", "enum": [
        "proposed", "approved", "shadow", "partial", "enforced", "superseded", "rolled_back"]},
    "approvals": _array(_obj(principal=_S, comment=_S, created_at=_S)),
}  # fmt: skip
SCHEMAS: dict[str, Any] = {
    "Problem": _obj(["file", "line", "column", "reason", "severity"], file=_S, line=_I,
                    column=_I, reason=_S,
                    severity={"type": "string", "enum": ["error", "warning"]}),
    "Error": _obj(["error", "detail"], error=_S, detail=_S,
                  problems=_array(_ref("Problem"))),
    "Version": _obj(list(_VERSION_FIELDS), **_VERSION_FIELDS),
    "VersionWithDocument": _obj([*_VERSION_FIELDS, "document"], **_VERSION_FIELDS,
                                document=_S),
    "VersionList": _obj(["versions"], versions=_array(_ref("Version"))),
    "VersionOnly": _obj(["version"], version=_ref("Version")),
    "VersionDocument": _obj(["version"], version=_ref("VersionWithDocument")),
    "Proposed": _obj(["version", "warnings"], version=_ref("Version"),
                     warnings=_array(_ref("Problem"))),
    "Proposal": _obj(["document"], document=_S, message=_S,
                     format={"type": "string", "enum": ["yaml", "json", "toml"],
                             "default": "yaml"}),
    "Approval": _obj(comment=_S),
    "Rollout": _obj(["stage"], stage=_STAGE,
                    percent={"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 100,
                             "description": "only with stage 'percent'"}),
    "Rollback": _obj(reason=_S),
    "Deployment": _obj(["id", "version", "action", "stage", "percent", "published"],
                       id=_I, version=_I, action={"type": "string",
                                                  "enum": ["rollout", "rollback"]},
                       stage=_STAGE, percent=_N, actor=_S, created_at=_S,
                       published={"type": "object", "additionalProperties": _S,
                                  "description": "target -> published digest"}),
    "DeploymentOnly": _obj(["deployment"], deployment=_ref("Deployment")),
    "DeploymentList": _obj(["deployments"], deployments=_array(_ref("Deployment"))),
    "Diff": _obj(["from", "to", "same_rules", "unified"], to=_I, same_rules=_B, unified=_S,
                 changes={"description": "rule-level changes, when available"},
                 **{"from": _I}),
    "Status": _obj(["live", "enforced_version", "targets", "approvals_required"],
                   live={"oneOf": [_ref("Deployment"), {"type": "null"}]},
                   enforced_version={"type": ["integer", "null"]}, targets=_array(_S),
                   approvals_required=_I),
    "AuditEntry": _obj(["seq", "at", "principal", "role", "action", "target", "outcome",
                        "detail", "prev_hash", "hash"], seq=_I, at=_S, principal=_S, role=_S,
                       action=_S, target=_S, outcome=_S, detail={}, prev_hash=_S, hash=_S),
    "AuditList": _obj(["entries"], entries=_array(_ref("AuditEntry"))),
    "Verification": _obj(["ok", "entries", "head"], ok=_B, entries=_I, head=_S,
                         broken={"type": ["integer", "null"]}, reason=_S),
    "Whoami": _obj(["principal", "role"], principal=_S, role=_S),
    "Brownout": _obj(["factor", "until", "tiers", "rules", "reason"], factor=_FACTOR,
                     until={"type": "number", "description": "its end, epoch seconds"},
                     tiers=_array(_S), rules=_array(_S), reason=_S),
    "BrownoutState": _obj(["brownout"],
                          brownout={"oneOf": [_ref("Brownout"), {"type": "null"}]}),
    "BrownoutOnly": _obj(["brownout"], brownout=_ref("Brownout")),
    "BrownoutRequest": _obj(["factor", "seconds"], factor=_FACTOR, seconds=_SECONDS,
                            tiers={**_array(_S), "description": "empty or left out: all"},
                            rules={**_array(_S), "description": "empty or left out: all"},
                            reason=_S),
    "Cleared": _obj(["cleared"], cleared={"type": "boolean",
                                          "description": "false: no brownout was in force"}),
    "Ban": _obj(["rule", "identity", "digest", "until", "reason"], rule=_S,
                identity={"type": "string",
                          "description": "the address for ip rules, else h: and a digest prefix"},
                digest=_S, until={"type": "number", "description": "its end, epoch seconds"},
                reason=_S),
    "BanList": _obj(["bans"], bans=_array(_ref("Ban"))),
    "BanOnly": _obj(["ban"], ban=_ref("Ban")),
    "BanRequest": _obj(["rule", "identity", "seconds"], rule=_S,
                       identity={"type": "string", "description": "ip:ADDRESS, user:ID, "
                                 "tenant:ID, api_key:KEY (hashed, never stored) or h:DIGEST"},
                       seconds=_SECONDS, reason={"type": "string", "default": "manual"}),
    "TopOffenders": _obj(["rules"], rules={
        "type": "object", "description": "rule -> identities, most rejections first",
        "additionalProperties": _array(_obj(["identity", "rejections"], identity=_S,
                                            rejections=_I))}),
}  # fmt: skip
_ERROR_TEXT = {
    401: "missing or unknown bearer token", 403: "the role may not do this",
    404: "no such version or ban", 409: "the action conflicts with the current state",
    422: "invalid request or rules document",
    502: "a publication target or the operations Redis failed",
    503: "no operations Redis configured (ratemw control --ops-redis)",
}  # fmt: skip


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _operation(ep: Endpoint) -> dict[str, Any]:
    roles = sorted(PERMISSIONS[ep.permission])
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _I if kind == "int" else _S}
        for name, kind in re.findall(r"\{(\w+)(?::(\w+))?\}", ep.path)
    ]
    params += [
        {"name": n, "in": "query", "required": False, "schema": {"type": t}, "description": d}
        for n, t, d in ep.query
    ]
    error = {"application/json": {"schema": _ref("Error")}}
    responses: dict[str, Any] = {
        str(ep.ok[0]): {"description": "OK",
                        "content": {"application/json": {"schema": _ref(ep.ok[1])}}}
        if ep.ok[1] else {"description": "No Content"},
    }  # fmt: skip
    for status in (401, 403, *ep.errors):
        responses[str(status)] = {"description": _ERROR_TEXT[status], "content": error}
    op: dict[str, Any] = {
        "operationId": ep.operation,
        "summary": ep.summary,
        "description": f"Roles: {', '.join(roles)}.",
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": responses,
    }
    if ep.body:
        content: dict[str, Any] = {"application/json": {"schema": _ref(ep.body)}}
        if ep.operation == "proposeVersion":
            raw = {"schema": {"type": "string"}}
            content.update({"application/yaml": raw, "application/toml": raw})
        op["requestBody"] = {"required": ep.operation in _BODY_REQUIRED, "content": content}
    return op


def openapi_document(endpoints: Sequence[Endpoint] = ENDPOINTS) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``."""
    paths: dict[str, dict[str, Any]] = {}
    for ep in endpoints:
        paths.setdefault(_openapi_path(ep.path), {})[ep.method.lower()] = _operation(ep)
    paths["/healthz"] = {
        "get": {
            "operationId": "health",
            "summary": "Liveness",
            "security": [],
            "responses": {"200": {"description": "OK"}},
        }
    }
    paths["/openapi.json"] = {"get": {"operationId": "openapi", "summary": "This document",
                                      "security": [],
                                      "responses": {"200": {"description": "OK"}}}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ratemw control",
            "version": _ratemw_version,
            "description": "Propose, approve, roll out, roll back and audit ratemw rule "
            "sets; set brownouts, ban identities and read the top offenders.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


# -- the app ----------------------------------------------------------------------------


def create_app(
    db_url: str | Database,
    publish_targets: Sequence[str] = (),
    tokens: TokenTable | None = None,
    *,
    required_approvals: int = 1,
    publisher: Publisher | None = None,
    ops_redis: str | None = None,
    ops_app: str = "default",
) -> Starlette:
    """Build the control-plane app on ``db_url`` (migrated now), publishing to targets.

    ``tokens`` lists who may call it (none: every API call gets 401). ``ops_redis`` is
    the limiters' Redis and ``ops_app`` their key namespace, for the operations
    endpoints (503 without it). Raises :class:`ratemw.control.ControlError` for a bad
    database or Redis URL or a missing driver and
    :class:`ratemw.errors.MissingDependency` without Starlette (or redis-py, with
    ``ops_redis``).
    """
    require("starlette", extra="starlette", purpose="ratemw control")
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    db = open_database(db_url) if isinstance(db_url, str) else db_url
    try:
        service = ControlService(
            db, publish_targets, required_approvals=required_approvals, publisher=publisher,
            ops_redis=ops_redis, ops_app=ops_app,
        )  # fmt: skip
    except BaseException:
        if isinstance(db_url, str):
            db.close()
        raise
    table = tokens if tokens is not None else TokenTable()
    document = openapi_document()

    def error(status: int, code: str, detail: str, **extra: Any) -> Response:
        headers = {}
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="ratemw-control"'
        return JSONResponse({"error": code, "detail": detail, **extra}, status, headers)

    def route(ep: Endpoint) -> Route:
        async def endpoint(request: Request) -> Response:
            target = request.url.path
            token = bearer_token(request.headers.get("authorization"))
            principal = table.authenticate(token)
            if principal is None or not principal.may(ep.permission):
                missing = principal is None
                reason = (
                    "no bearer token" if token is None and missing
                    else "unknown token" if missing
                    else f"role {principal.role} may not {ep.permission}"  # type: ignore[union-attr]
                )  # fmt: skip
                await run_in_threadpool(
                    service.record,
                    principal=principal.name if principal else "-",
                    role=principal.role if principal else "-",
                    action=ep.operation,
                    target=target,
                    outcome="unauthenticated" if missing else "forbidden",
                    detail={"method": ep.method, "reason": reason},
                )
                if missing:
                    return error(401, "unauthenticated", reason)
                return error(403, "forbidden", reason)
            call = Call(
                principal,
                dict(request.path_params),
                dict(request.query_params),
                await request.body(),
                request.headers.get("content-type", ""),
            )
            try:
                status, payload = await run_in_threadpool(ep.handler, service, call)
            except ServiceError as exc:
                return error(exc.status, exc.code, str(exc), **exc.extra)
            except ControlError as exc:
                return error(500, "control_error", str(exc))
            if status == 204:  # RFC 9110 15.3.5: no content, so no JSON body either
                return Response(status_code=204)
            return JSONResponse(payload, status)

        return Route(ep.path, endpoint, methods=[ep.method], name=ep.operation)

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    routes = [route(ep) for ep in ENDPOINTS]
    routes += [Route("/openapi.json", openapi, methods=["GET"]), Route("/healthz", health)]
    owns_db = isinstance(db_url, str)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            service.close_ops()
            if owns_db:
                db.close()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.service = service
    return app
