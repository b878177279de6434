"""The framework-neutral request that adapters hand to ``Limiter.decide``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ratemw.errors import log_identity_failure

__all__ = [
    "USER_UNRESOLVED",
    "RequestInfo",
    "from_asgi_scope",
    "from_wsgi_environ",
    "unresolved_user",
]

_new = object.__new__
#: the methods servers send, already upper case: a dict hit instead of str().upper()
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field,
# a microsecond per request here; ratemw never mutates a RequestInfo (it makes copies
# with dataclasses.replace), and callers should not either.
@dataclass(slots=True)
class RequestInfo:
    """What the limiter needs to know about one request (treat it as immutable).

    ``headers`` maps lower-case header names to values (adapters join repeated
    headers with ``", "``). ``peer`` is the address of the TCP peer; the client
    address is derived from it and, through trusted proxies only, from
    ``X-Forwarded-For`` / ``Forwarded``. ``user``, ``tenant``, ``tier`` and
    ``api_key`` are what the framework already knows; ``route`` is the
    framework's route name when it has one. ``claims`` are *verified* JWT claims.
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    scheme: str = "http"
    peer: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    user: str | None = None
    tenant: str | None = None
    tier: str | None = None
    api_key: str | None = None
    route: str | None = None
    claims: Mapping[str, object] | None = None
    #: the raw query string (read only on ratemw's own challenge endpoint)
    query: str | bytes = ""


class _Unresolved(str):
    __slots__ = ()


#: The ``user`` of a request whose user getter raised: empty, so no rule keys on it, and
#: told apart from "anonymous" by identity (``info.user is USER_UNRESOLVED``), so rules
#: that need the user apply their ``on_identity_error`` (default: the client address).
USER_UNRESOLVED: Final[str] = _Unresolved()


def unresolved_user(exc: BaseException, source: str) -> str:
    """What an adapter puts in ``RequestInfo.user`` when its user getter raised ``exc``.

    Logs the failure once per cause (``source`` names the getter, e.g.
    ``"RATEMW_USER_GETTER"``) and returns :data:`USER_UNRESOLVED`: the request is still
    decided, rules that do not need the user as usual.
    """
    log_identity_failure(
        exc, source, "rules that need the user fall back per on_identity_error (default: ip)"
    )
    return USER_UNRESOLVED


def _header_dict(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        # Repeated fields are one list (RFC 9110 5.3): X-Forwarded-For hops stay in order.
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


class EnvironHeaders(Mapping[str, str]):
    """The headers of a WSGI environ, by lower-case name, read on demand.

    Building a dict of every header costs more than a whole decision; the limiter
    reads one or two of them, if any.
    """

    __slots__ = ("_environ",)

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"

    def get(self, name: str, default: Any = None) -> Any:
        value = self._environ.get(self._key(name))
        return default if value is None else str(value)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").lower()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and self._environ[key]:
                yield key.replace("_", "-").lower()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class ScopeHeaders(Mapping[str, str]):
    """The headers of an ASGI scope, decoded (latin-1, which cannot fail) on first use."""

    __slots__ = ("_dict", "_raw")

    def __init__(self, raw: Iterable[tuple[bytes, bytes]]) -> None:
        self._raw = raw
        self._dict: dict[str, str] | None = None

    def _headers(self) -> dict[str, str]:
        if self._dict is None:
            self._dict = _header_dict(
                (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in self._raw
            )
        return self._dict

    def get(self, name: str, default: Any = None) -> Any:
        return self._headers().get(name, default)

    def __getitem__(self, name: str) -> str:
        return self._headers()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers())

    def __len__(self) -> int:
        return len(self._headers())


# -- the adapters' RequestInfo: the rarely read fields filled on first read ----------------

_SLOT = {f: RequestInfo.__dict__[f] for f in ("host", "scheme", "headers", "query")}


def _lazy_field(name: str) -> Any:
    """A property standing in for the slot ``name``: fills the lazy fields on first use."""
    slot = _SLOT[name]
    get, put = slot.__get__, slot.__set__

    def read(self: _LazyInfo) -> Any:
        source = self._source
        if source is not None:
            self._fill(source)
        return get(self)

    def write(self: _LazyInfo, value: Any) -> None:
        source = self._source
        if source is not None:
            self._fill(source)
        put(self, value)

    return property(read, write)


class _LazyInfo(RequestInfo):
    """A :class:`RequestInfo` whose ``host``, ``scheme``, ``headers`` and ``query`` are
    read from the environ or scope (``_source``) when one of them is first read.

    The limiter's common case reads only ``path`` and ``peer``: filling every field of
    every request cost about as much as the decision itself. It is a ``RequestInfo`` in
    every other way: equal to one with the same fields, shown, copied and pickled as one;
    ``dataclasses.replace`` gives an instance with every field filled.
    """

    __slots__ = ("_source",)
    _source: Any

    host = _lazy_field("host")
    scheme = _lazy_field("scheme")
    headers = _lazy_field("headers")
    query = _lazy_field("query")

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # dataclasses.replace, copies
        self._source = None
        super().__init__(*args, **kwargs)

    def _fill(self, source: Any) -> None:
        raise NotImplementedError

    def _plain(self) -> RequestInfo:
        return RequestInfo(*[getattr(self, f) for f in _FIELDS])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RequestInfo):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _FIELDS)

    __hash__ = None  # type: ignore[assignment]  # as RequestInfo's (eq without frozen)

    def __repr__(self) -> str:
        return repr(self._plain())

    def __reduce__(self) -> tuple[Any, ...]:
        return RequestInfo, tuple(getattr(self, f) for f in _FIELDS)


_FIELDS = tuple(RequestInfo.__dataclass_fields__)


class _EnvironInfo(_LazyInfo):
    __slots__ = ()

    def _fill(self, environ: Any) -> None:
        # Another thread may fill the same instance at once: both store the same values.
        get = environ.get
        host = get("HTTP_HOST") or get("SERVER_NAME", "")
        headers = _new(EnvironHeaders)
        headers._environ = environ
        _SLOT["host"].__set__(self, str(host))
        _SLOT["scheme"].__set__(self, str(get("wsgi.url_scheme", "http")))
        _SLOT["headers"].__set__(self, headers)
        _SLOT["query"].__set__(self, get("QUERY_STRING", ""))
        self._source = None


class _ScopeInfo(_LazyInfo):
    __slots__ = ()

    def _fill(self, scope: Any) -> None:
        raw = scope.get("headers", ())
        host = ""
        for name, value in raw:
            if name == b"host":  # scan for it without decoding every header
                host = bytes(value).decode("latin-1")
                break
        if not host:
            server = scope.get("server")
            host = str(server[0]) if server else ""
        headers = _new(ScopeHeaders)
        headers._raw = raw
        headers._dict = None
        _SLOT["host"].__set__(self, host)
        _SLOT["scheme"].__set__(self, str(scope.get("scheme", "http")))
        _SLOT["headers"].__set__(self, headers)
        _SLOT["query"].__set__(self, scope.get("query_string", b""))
        self._source = None


def from_wsgi_environ(
    environ: Mapping[str, Any],
    *,
    user: str | None = None,
    tenant: str | None = None,
    tier: str | None = None,
    api_key: str | None = None,
    route: str | None = None,
    claims: Mapping[str, object] | None = None,
) -> RequestInfo:
    """A :class:`RequestInfo` from a WSGI environ (PEP 3333); never raises on odd input.

    The path is ``SCRIPT_NAME + PATH_INFO``, decoded as UTF-8 (PEP 3333 hands it
    over as latin-1). ``user``, ``tenant``, ``tier``, ``api_key``, ``route`` and
    ``claims`` are what the framework knows. Headers are read from the environ on demand.
    """
    info = _environ_info(environ)
    info.user = user
    info.tenant = tenant
    info.tier = tier
    info.api_key = api_key
    info.route = route
    info.claims = claims
    return info


def _environ_info(environ: Mapping[str, Any]) -> RequestInfo:
    """:func:`from_wsgi_environ` without what the framework knows: the default builder of
    ``ratemw.wsgi.RateLimitMiddleware``.

    One positional parameter: CPython calls such a function without the lookups of
    keyword-only defaults, which cost a sixth of what the middleware adds.
    """
    try:
        # What servers set (PEP 3333), read by subscript: a .get() call costs twice as much.
        method = environ["REQUEST_METHOD"]
        raw = environ["PATH_INFO"]
        script = environ["SCRIPT_NAME"]
        peer = environ["REMOTE_ADDR"]
        if script or not raw or type(raw) is not str:  # mounted, empty or odd: joined
            raw = f"{script}{raw}" or "/"
    except KeyError:  # something is missing: the defaults
        get = environ.get
        method = get("REQUEST_METHOD", "GET")
        raw = f"{get('SCRIPT_NAME', '')}{get('PATH_INFO', '')}" or "/"
        peer = get("REMOTE_ADDR", "")
    # Filled field by field: calling the dataclass costs a third of a decision (its
    # __init__ is a Python function behind a slot wrapper). Host, scheme, headers and
    # the query are read from the environ if and when asked for (_EnvironInfo).
    info: _EnvironInfo = _new(_EnvironInfo)
    info._source = environ
    try:
        info.method = _METHODS[method]
    except (KeyError, TypeError):  # another method, or odd input
        info.method = str(method).upper()
    info.path = (
        raw if raw.isascii() else raw.encode("latin-1", "replace").decode("utf-8", "replace")
    )
    info.peer = str(peer)
    info.user = info.tenant = info.tier = info.api_key = info.route = info.claims = None
    return info


def from_asgi_scope(
    scope: Mapping[str, Any],
    *,
    user: str | None = None,
    tenant: str | None = None,
    tier: str | None = None,
    api_key: str | None = None,
    route: str | None = None,
    claims: Mapping[str, object] | None = None,
) -> RequestInfo:
    """A :class:`RequestInfo` from an ASGI HTTP scope; never raises on odd input.

    Header bytes are decoded as latin-1, which cannot fail, when first read; the
    path is the scope's ``path`` (already decoded by the server; it includes
    ``root_path``). The other arguments are as for :func:`from_wsgi_environ`.
    """
    info = _scope_info(scope)
    info.user = user
    info.tenant = tenant
    info.tier = tier
    info.api_key = api_key
    info.route = route
    info.claims = claims
    return info


def _scope_info(scope: Mapping[str, Any]) -> RequestInfo:
    """:func:`from_asgi_scope` without what the framework knows: the default builder of
    ``ratemw.asgi.RateLimitMiddleware`` (one positional parameter, as _environ_info)."""
    try:
        # What servers set (ASGI HTTP scope), read by subscript, as in _environ_info.
        method = scope["method"]
        path = scope["path"]
        client = scope["client"]
    except KeyError:  # optional keys left out: the defaults
        get = scope.get
        method = get("method", "GET")
        path = get("path", "/")
        client = get("client")
    # Field by field, as in _environ_info; host, scheme, headers (decoded on first
    # use) and the query are read from the scope if and when asked for (_ScopeInfo).
    info: _ScopeInfo = _new(_ScopeInfo)
    info._source = scope
    try:
        info.method = _METHODS[method]
    except (KeyError, TypeError):  # another method, or odd input
        info.method = str(method).upper()
    info.path = str(path) or "/"
    info.peer = str(client[0]) if client else ""
    info.user = info.tenant = info.tier = info.api_key = info.route = info.claims = None
    return info
