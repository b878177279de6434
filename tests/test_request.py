from __future__ import annotations

import json

from ratemw import Limiter, RequestInfo
from ratemw.request import from_asgi_scope, from_wsgi_environ
from ratemw.testing import ManualClock


def test_from_wsgi_environ() -> None:
    environ = {
        "REQUEST_METHOD": "post",
        "SCRIPT_NAME": "/app",
        "PATH_INFO": "/caf\xc3\xa9",  # PEP 3333: UTF-8 bytes seen as latin-1
        "REMOTE_ADDR": "10.0.0.1",
        "HTTP_HOST": "api.example.com",
        "HTTP_X_FORWARDED_FOR": "1.2.3.4",
        "HTTP_X_API_KEY": "k",
        "wsgi.url_scheme": "https",
    }
    info = from_wsgi_environ(environ, user="u1")
    assert (info.method, info.path, info.host, info.scheme, info.peer) == (
        "POST",
        "/app/café",
        "api.example.com",
        "https",
        "10.0.0.1",
    )
    assert info.headers == {
        "host": "api.example.com",
        "x-forwarded-for": "1.2.3.4",
        "x-api-key": "k",
    }
    assert info.user == "u1"
    assert from_wsgi_environ({}).path == "/"


def test_from_asgi_scope_joins_repeated_headers_and_never_raises() -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/x",
        "scheme": "http",
        "client": ("10.0.0.2", 5555),
        "server": ("srv", 80),
        "headers": [
            (b"x-forwarded-for", b"1.1.1.1"),
            (b"X-Forwarded-For", b"2.2.2.2"),
            (b"x-odd", b"\xff\x00"),
        ],
    }
    info = from_asgi_scope(scope)
    assert info.peer == "10.0.0.2" and info.host == "srv"
    assert info.headers["x-forwarded-for"] == "1.1.1.1, 2.2.2.2"
    assert info.headers["x-odd"] == "\xff\x00"
    assert from_asgi_scope({"type": "http"}).peer == ""


def test_rejection_response_is_problem_json() -> None:
    limiter = Limiter(
        {"version": 1, "rules": [{"name": "one", "match": {"path": "/"}, "limit": "1/minute"}]},
        clock=ManualClock(),
    )
    info = from_asgi_scope({"type": "http", "path": "/", "client": ("1.2.3.4", 1)})
    limiter.decide(info)
    status, headers, body = limiter.decide(info).response()
    assert status == 429
    names = dict(headers)
    assert names["Content-Type"] == "application/problem+json"
    assert names["Retry-After"] == "60" and int(names["Content-Length"]) == len(body)
    problem = json.loads(body)
    assert problem["status"] == 429 and problem["violated-policies"] == ["one"]
    assert problem["type"].endswith("#quota-exceeded")


def test_adapters_fill_every_field_as_the_dataclass_would() -> None:
    # from_wsgi_environ and from_asgi_scope fill the slots one by one (no __init__ call):
    # a field added to RequestInfo must be filled there too.
    import dataclasses

    environ = {"REQUEST_METHOD": "get", "PATH_INFO": "/a", "REMOTE_ADDR": "192.0.2.1"}
    scope = {"type": "http", "method": "GET", "path": "/a", "client": ("192.0.2.1", 1)}
    for info in (
        from_wsgi_environ(environ, user="u", route="r"),
        from_asgi_scope(scope, tenant="t", claims={"sub": "x"}),
    ):
        values = {f.name: getattr(info, f.name) for f in dataclasses.fields(RequestInfo)}
        assert info == RequestInfo(**values)


def test_adapter_infos_read_rare_fields_on_demand_and_behave_as_request_infos() -> None:
    # Host, scheme, headers and query are read from the environ or scope when first
    # asked for; otherwise the instance is a RequestInfo like any other.
    import copy
    import dataclasses
    import pickle

    environ = {
        "REQUEST_METHOD": "GET", "SCRIPT_NAME": "", "PATH_INFO": "/a", "REMOTE_ADDR": "192.0.2.1",
        "SERVER_NAME": "srv", "QUERY_STRING": "x=1", "HTTP_X_API_KEY": "k",
    }  # fmt: skip
    scope = {
        "type": "http", "method": "GET", "path": "/a", "client": ("192.0.2.1", 1),
        "server": ("srv", 80), "scheme": "https", "query_string": b"x=1",
        "headers": [(b"x-api-key", b"k")],
    }  # fmt: skip
    for info, scheme, query in (
        (from_wsgi_environ(environ, user="u"), "http", "x=1"),
        (from_asgi_scope(scope, user="u"), "https", b"x=1"),
    ):
        assert isinstance(info, RequestInfo)
        plain = RequestInfo(
            method="GET", path="/a", host="srv", scheme=scheme, peer="192.0.2.1",
            headers={"x-api-key": "k"}, user="u", query=query,
        )  # fmt: skip
        assert (info.host, info.scheme, info.query) == ("srv", scheme, query)
        assert info.headers.get("x-api-key") == "k"
        assert repr(info).startswith("RequestInfo(method='GET', path='/a', host='srv'")
        for same in (copy.copy(info), pickle.loads(pickle.dumps(info))):
            assert type(same) is RequestInfo
            assert (same.host, same.scheme, same.query) == ("srv", scheme, query)
        changed = dataclasses.replace(info, host="other", user=None)
        assert (changed.host, changed.user, changed.path, changed.scheme) == (
            "other", None, "/a", scheme,
        )  # fmt: skip
        assert info.host == "srv" and info != changed
        assert info.headers.get("x-api-key") == plain.headers["x-api-key"]
    # A field written before any was read keeps its value; the others are still read.
    info = from_wsgi_environ({**environ, "HTTP_HOST": "h"})
    info.scheme = "https"
    assert (info.scheme, info.host, info.query) == ("https", "h", "x=1")
    # Under a SCRIPT_NAME, or with odd input, the path is still joined as before.
    assert from_wsgi_environ({**environ, "SCRIPT_NAME": "/app"}).path == "/app/a"
    assert from_wsgi_environ({**environ, "PATH_INFO": ""}).path == "/"
    assert from_wsgi_environ({**environ, "PATH_INFO": b"/b"}).path == "b'/b'"
