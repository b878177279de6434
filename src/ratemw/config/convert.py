"""``ratemw convert``: Flask-Limiter, slowapi and django-ratelimit decorators to rules.

The source is read, never imported or run: :mod:`ast` finds ``Limiter(...)`` (its
``default_limits``, ``application_limits``, ``strategy`` and ``key_func``),
``@limiter.limit(...)`` / ``@limiter.shared_limit(...)`` with the route decorator beside
it (``@app.post("/login")``, ``@app.route(..., methods=[...])``) and django-ratelimit's
``@ratelimit(key=..., rate=..., method=..., block=...)``. Limit strings, methods and the
common key functions translate mechanically; what does not (a key read from the body, a
callable, a route the decorator does not name) is reported as a :class:`Finding` with
its line, and the rule keeps a safe stand-in (``identity: ip``) so the output is a
complete rules file to review.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from ratemw.rules.notation import parse_rate, split_limits

__all__ = ["MAX_SOURCE_BYTES", "Conversion", "Finding", "convert_django_rate", "convert_source"]

#: a larger source file is refused unread: the converter is for application modules
MAX_SOURCE_BYTES = 2 * 1024 * 1024
_DJANGO_RATE = re.compile(r"^\s*(\d+)/(\d*)([smhd])?\s*$")
_DJANGO_UNIT = {"s": "second", "m": "minute", "h": "hour", "d": "day"}
_UNSAFE = ["POST", "PUT", "PATCH", "DELETE"]
_STRATEGY = {"fixed-window": "fixed_window", "moving-window": "sliding_window",
             "sliding-window-counter": "sliding_window"}  # fmt: skip
_ROUTE_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}
_FLASK_CONVERTER = re.compile(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


@dataclass(frozen=True)
class Finding:
    """Something the converter could not translate as it is, at ``line``."""

    line: int
    severity: str  # "error": the rule needs a decision; "warning": behaviour differs
    message: str

    def render(self, filename: str) -> str:
        return f"{filename}:{self.line}: {self.severity}: {self.message}"


@dataclass
class Conversion:
    """The rules converted from one source file, and what needs a human."""

    defaults: dict[str, Any] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"version": 1}
        if self.defaults:
            doc["defaults"] = self.defaults
        doc["rules"] = self.rules
        return doc

    def yaml(self) -> str:
        return yaml.safe_dump(
            self.document(), sort_keys=False, allow_unicode=True, default_flow_style=None
        )

    def _find(self, node: ast.AST, severity: str, message: str) -> None:
        self.findings.append(Finding(getattr(node, "lineno", 0), severity, message))


def convert_django_rate(text: str) -> str:
    """django-ratelimit's ``5/m`` or ``10/5m`` as ratemw's ``5/minute``, ``10/5 minutes``."""
    m = _DJANGO_RATE.match(text)
    if m is None:
        raise ValueError(f"not a django-ratelimit rate: {text[:60]!r}")
    count, multiple, unit = m.group(1), m.group(2), _DJANGO_UNIT[m.group(3) or "s"]
    rate = f"{count}/{multiple} {unit}s" if multiple and multiple != "1" else f"{count}/{unit}"
    parse_rate(rate)  # the same bounds as a rules file
    return rate


def convert_source(text: str, module: str = "views") -> Conversion:
    """Convert the decorators of one Python source; ``module`` is its dotted name (Django
    rules match views by ``module.function``). Raises ``ValueError`` for a source larger
    than :data:`MAX_SOURCE_BYTES` and ``SyntaxError`` for one that does not parse."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_SOURCE_BYTES:
        raise ValueError(f"source larger than {MAX_SOURCE_BYTES} bytes")
    tree = ast.parse(text)
    out = Conversion()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _callee(node) == "Limiter":
            _limiter_call(node, out)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _view(node, module, out, names)
    return out


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _kw(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _const(node: ast.expr | None) -> Any:
    try:
        return ast.literal_eval(node) if node is not None else None
    except ValueError:
        return _NOT_LITERAL


_NOT_LITERAL = object()


def _limits(node: ast.expr, out: Conversion) -> list[str]:
    """Flask-Limiter / slowapi limit strings (one string or a list of them), checked."""
    value = _const(node)
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        out._find(node, "error", "the limit is computed at run time: write it out")
        return []
    limits = [part for item in items for part in split_limits(item) if part]
    for limit in limits:
        try:
            parse_rate(limit)
        except ValueError as exc:
            out._find(node, "error", str(exc))
    return limits


def _identity(node: ast.expr | None, out: Conversion) -> str:
    if node is None:
        return "ip"
    name = node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")
    if name == "get_remote_address":
        return "ip"
    if name == "get_ipaddr":
        out._find(node, "warning", "get_ipaddr believes any X-Forwarded-For; ratemw's ip "
                  "does only through identity.trusted_proxies: list your proxies")  # fmt: skip
        return "ip"
    shown = ast.unparse(node)[:60]
    out._find(node, "error", f"key function {shown} cannot be translated: choose an "
              "identity (user, api_key, tenant, header:NAME, jwt:CLAIM); ip for now")  # fmt: skip
    return "ip"


def _limiter_call(call: ast.Call, out: Conversion) -> None:
    key = _kw(call, "key_func") or (call.args[0] if call.args else None)
    identity = _identity(key, out)
    out.defaults["identity"] = identity
    strategy = _const(_kw(call, "strategy"))
    if isinstance(strategy, str) and strategy in _STRATEGY:
        out.defaults["algorithm"] = _STRATEGY[strategy]
    elif strategy is None:
        out.defaults["algorithm"] = "fixed_window"  # both libraries' default strategy
    if _const(_kw(call, "headers_enabled")) is True:
        out.defaults["headers"] = "legacy"
    everyone = {"identity": "global"}
    for kw, name, extra in (("default_limits", "default", {}), ("application_limits",
                            "application", everyone)):  # fmt: skip
        node = _kw(call, kw)
        limits = _limits(node, out) if node is not None else []
        if limits:
            limit: str | list[str] = limits[0] if len(limits) == 1 else limits
            out.rules.append({"name": name, "match": {"path": "/**"}, **extra, "limit": limit})


def _route(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[str | None, list[str] | None]:
    """The path and methods of ``@app.route(...)`` / ``@app.post(...)`` on ``fn``."""
    for deco in fn.decorator_list:
        if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute)):
            continue
        verb = deco.func.attr
        path = _const(deco.args[0]) if deco.args else None
        if not isinstance(path, str) or not (verb == "route" or verb in _ROUTE_METHODS):
            continue
        path = _FLASK_CONVERTER.sub(r"{\1}", path)  # /user/<int:id> -> /user/{id}
        if verb == "route":
            methods = _const(_kw(deco, "methods"))
            return path, [str(m).upper() for m in methods] if isinstance(methods, list) else None
        return path, [verb.upper()]
    return None, None


def _unique(name: str, names: set[str]) -> str:
    candidate, n = name, 2
    while candidate in names:
        candidate, n = f"{name}.{n}", n + 1
    names.add(candidate)
    return candidate


def _view(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, module: str, out: Conversion, names: set[str]
) -> None:
    path, methods = _route(fn)
    for deco in fn.decorator_list:
        if isinstance(deco, ast.Attribute) and deco.attr == "exempt":
            out._find(deco, "warning", f"{fn.name} is exempt: keep @ratemw.exempt (Flask); with "
                      "Starlette, a mode: shadow rule that overrides default")  # fmt: skip
            continue
        if not isinstance(deco, ast.Call):
            continue
        kind = _callee(deco)
        if kind == "ratelimit" and (_kw(deco, "rate") is not None or _kw(deco, "key")):
            out.rules.append(_django(deco, fn.name, module, out, names))
        elif kind in ("limit", "shared_limit") and deco.args:
            rule = _flask(deco, fn.name, path, methods, out, names)
            if rule is not None:
                out.rules.append(rule)


def _flask(
    deco: ast.Call, fn: str, path: str | None, methods: list[str] | None,
    out: Conversion, names: set[str],
) -> dict[str, Any] | None:  # fmt: skip
    limits = _limits(deco.args[0], out)
    if not limits:
        return None
    rule: dict[str, Any] = {"name": _unique(fn, names)}
    match: dict[str, Any] = {"path": path} if path else {"route": fn}
    if path is None:
        out._find(deco, "warning", f"no route decorator beside it: matched by route name {fn!r}")
    only = _const(_kw(deco, "methods"))
    if isinstance(only, list):
        methods = [str(m).upper() for m in only]
    if methods:
        match["methods"] = methods
    rule["match"] = match
    key = _kw(deco, "key_func")
    if key is not None:
        rule["identity"] = _identity(key, out)
    rule["limit"] = limits[0] if len(limits) == 1 else limits
    cost = _const(_kw(deco, "cost"))
    if isinstance(cost, int) and cost != 1:
        rule["cost"] = cost
    if _kw(deco, "exempt_when") is not None or _kw(deco, "deduct_when") is not None:
        out._find(deco, "warning", "exempt_when / deduct_when have no equivalent: use allow:")
    # A route's own limit replaces the defaults in both libraries.
    has_default = any(r["name"] == "default" for r in out.rules)
    if has_default and _const(_kw(deco, "override_defaults")) is not False:
        rule["overrides"] = ["default"]
    if _callee(deco) == "shared_limit":
        out._find(deco, "warning", "a shared limit: merge the rules of its scope into one "
                  "rule whose match covers every route")  # fmt: skip
    return rule


def _django(
    deco: ast.Call, fn: str, module: str, out: Conversion, names: set[str]
) -> dict[str, Any]:
    out.defaults.setdefault("algorithm", "fixed_window")  # django-ratelimit's windows
    group = _const(_kw(deco, "group"))
    rule: dict[str, Any] = {"name": _unique(group if isinstance(group, str) else fn, names)}
    match: dict[str, Any] = {"route": f"{module}.{fn}"}
    method = _kw(deco, "method")
    value = _const(method)
    if isinstance(method, ast.Attribute) and method.attr == "UNSAFE":
        match["methods"] = list(_UNSAFE)
    elif isinstance(value, str):
        match["methods"] = [value.upper()]
    elif isinstance(value, list):
        match["methods"] = [str(m).upper() for m in value]
    rule["match"] = match
    key = _const(_kw(deco, "key"))
    if key in ("ip", "user_or_ip", "user"):
        rule["identity"] = "ip" if key == "ip" else "user"
        if key == "user":
            out._find(deco, "warning", "key='user' puts all anonymous requests in one "
                      "bucket; ratemw's user falls back to the client address")  # fmt: skip
    elif isinstance(key, str) and key.startswith("header:"):
        rule["identity"] = f"header:{key[7:]}"
    else:
        shown = ast.unparse(_kw(deco, "key") or deco)[:60]
        out._find(deco, "error", f"key {shown} cannot be translated (ratemw never keys "
                  "on the query string, the body or a callable); ip for now")  # fmt: skip
        rule["identity"] = "ip"
    rate = _const(_kw(deco, "rate"))
    try:
        rule["limit"] = convert_django_rate(rate if isinstance(rate, str) else "")
    except ValueError:
        out._find(deco, "error", "the rate is not a literal like '5/m': 1/second for now")
        rule["limit"] = "1/second"
    if _const(_kw(deco, "block")) is False:
        rule["mode"] = "shadow"
        out._find(deco, "warning", "block=False: a shadow rule counts but never rejects, "
                  "and there is no request.limited")  # fmt: skip
    return rule
