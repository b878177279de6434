"""The OpenAPI 3.1 document of the control plane's REST API, served at /openapi.json.

Paths and operations come from the resources' route tables (:class:`Endpoint`: method,
path, role, schemas, error statuses); the schemas they name are :data:`SCHEMAS`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ratemw import __version__ as _ratemw_version
from ratemw.control.auth import PERMISSIONS
from ratemw.control.http import PROBLEM, Endpoint
from ratemw.control.ops_api import MAX_SECONDS

__all__ = ["SCHEMAS", "openapi_document"]


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
_SECONDS = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_SECONDS}
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
    "Error": _obj(["error", "detail", "status", "title"], error=_S, detail=_S, status=_I,
                  title=_S, problems=_array(_ref("Problem")),
                  target={"type": "string", "description": "publish_failed: the target "
                          "that failed (credentials masked)"},
                  published={"type": "object", "additionalProperties": _S,
                             "description": "publish_failed: the targets already written"},
                  limit_bytes={"type": "integer",
                               "description": "413: the largest body accepted"}),
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
    "Preview": _obj(["id", "version", "baseline", "recording", "ok", "cached", "created_at",
                     "headline", "reasons", "report"], id=_I, version=_I,
                    baseline={"type": "integer", "description": "the enforced version "
                              "replayed as the baseline"},
                    recording={"type": "string", "description": "SHA-256 of the "
                               "recording's files (names and bytes)"},
                    ok={"type": "boolean", "description": "false: the self-check refused; "
                        "see reasons"},
                    cached={"type": "boolean", "description": "true: stored earlier for "
                            "the same version, baseline and recording"},
                    created_at=_S, headline={"type": ["string", "null"]},
                    reasons=_array(_S),
                    report={"type": "object", "description": "the replay report, schema "
                            "ratemw-replay-report/1 (docs/replay.md)"}),
    "PreviewOnly": _obj(["preview"], preview=_ref("Preview")),
    "TopOffenders": _obj(["rules"], rules={
        "type": "object", "description": "rule -> identities, most rejections first",
        "additionalProperties": _array(_obj(["identity", "rejections"], identity=_S,
                                            rejections=_I))}),
}  # fmt: skip
_ERROR_TEXT = {
    401: "missing or unknown bearer token", 403: "the role may not do this",
    404: "no such version or ban", 409: "the action conflicts with the current state",
    413: "the request body is larger than the limit (ratemw control --max-body-bytes, "
         "--max-proposal-bytes)",
    422: "invalid request, parameter or rules document",
    502: "a publication target or the operations Redis failed",
    503: "no operations Redis configured (ratemw control --ops-redis), or no usable "
         "recording for previews (ratemw control --traffic)",
}  # fmt: skip


def _openapi_path(path: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", path)


def _operation(ep: Endpoint[Any]) -> dict[str, Any]:
    roles = sorted(PERMISSIONS[ep.permission])
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _I if kind == "int" else _S}
        for name, kind in re.findall(r"\{(\w+)(?::(\w+))?\}", ep.path)
    ]
    params += [
        {"name": n, "in": "query", "required": False, "description": d,
         "schema": {"type": t, "format": "int64"} if t == "integer" else {"type": t}}
        for n, t, d in ep.query
    ]  # fmt: skip
    error = {PROBLEM: {"schema": _ref("Error")}}
    responses: dict[str, Any] = {
        str(ep.ok[0]): {"description": "OK",
                        "content": {"application/json": {"schema": _ref(ep.ok[1])}}}
        if ep.ok[1] else {"description": "No Content"},
    }  # fmt: skip
    for status in sorted(_statuses(ep)):
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
        if ep.document_body:
            raw = {"schema": {"type": "string"}}
            content.update({"application/yaml": raw, "application/toml": raw})
        op["requestBody"] = {"required": ep.body_required, "content": content}
    return op


def _statuses(ep: Endpoint[Any]) -> set[int]:
    """Every error status ``ep`` can answer: the table's, and those of the checks that
    run before any handler (token, role, ids, body size, parameters)."""
    found = {401, 403, *ep.errors}
    if ":int}" in ep.path:
        found |= {404, 422}
    if ep.body:
        found |= {413, 422}
    if any(kind == "integer" for _, kind, _ in ep.query):
        found.add(422)
    return found


def openapi_document(endpoints: Sequence[Endpoint[Any]]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``endpoints``, with /healthz and /openapi.json."""
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
