"""The operations endpoints (brownout, bans, top) against a real Redis and real limiters."""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from ratemw import Limiter, RequestInfo
from ratemw.cli import main
from ratemw.control.app import ENDPOINTS, create_app
from ratemw.ops.shared import Layout
from tests.control import ALICE, BOB, CAROL, VICTOR, Api, token_table

API_KEY = "sk_live_control_plane_secret"
RULES: dict[str, Any] = {
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "100/minute"},
        {"name": "reports", "match": {"path": "/reports"}, "identity": "api_key",
         "limit": "100/minute"},
    ],
}  # fmt: skip


def _api(db_url: str, **options: Any) -> Api:
    return Api(create_app(db_url, (), token_table(), **options))


def _close(api: Api) -> None:
    api.app.state.service.close_ops()
    api.close()


@pytest.fixture
def api(db_url: str, redis_url: str) -> Iterator[Api]:
    client = _api(db_url, ops_redis=redis_url)
    yield client
    _close(client)


@pytest.fixture
def client(redis_url: str) -> Iterator[Any]:
    with redis.Redis.from_url(redis_url) as r:
        yield r


@pytest.fixture
def limiter(redis_url: str) -> Iterator[Limiter]:
    lim = Limiter(RULES, redis_url=redis_url, operations={"interval_seconds": 0})
    yield lim
    lim.close()


def put(api: Api, path: str, token: str, **kwargs: Any) -> httpx.Response:
    return api.request("PUT", path, token, **kwargs)


def delete(api: Api, path: str, token: str) -> httpx.Response:
    return api.request("DELETE", path, token)


def audit(api: Api) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = api.get("/v1/audit", VICTOR).json()["entries"]
    return entries


def login(limiter: Limiter, ip: str) -> str:
    d = limiter.decide(RequestInfo(path="/login", peer=ip))
    return "allowed" if d.allowed else d.action


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- brownout ---------------------------------------------------------------------------


def test_brownout_set_read_and_clear_reach_the_limiters(
    api: Api, client: Any, limiter: Limiter
) -> None:
    assert api.get("/v1/brownout", VICTOR).json() == {"brownout": None}
    body = {"factor": 0.5, "seconds": 900, "tiers": ["free"], "rules": ["login"],
            "reason": "db overloaded"}  # fmt: skip
    before = time.time()
    r = put(api, "/v1/brownout", CAROL, json=body)
    assert r.status_code == 200, r.text
    shown = r.json()["brownout"]
    assert {k: shown[k] for k in ("factor", "tiers", "rules", "reason")} == {
        "factor": 0.5, "tiers": ["free"], "rules": ["login"], "reason": "db overloaded"
    }  # fmt: skip
    assert before + 900 <= shown["until"] <= time.time() + 900
    assert api.get("/v1/brownout", VICTOR).json() == {"brownout": shown}

    stored = Layout().brownout(client)
    assert stored is not None
    assert (stored.factor, stored.tiers, stored.rules) == (0.5, ("free",), ("login",))
    assert 890 < client.pttl(Layout().brownout_key) / 1000 <= 900  # expires by itself

    limiter.ops.tick()
    assert limiter.metrics().brownout_factor == 0.5

    r = delete(api, "/v1/brownout", CAROL)
    assert r.status_code == 200 and r.json() == {"cleared": True}
    assert Layout().brownout(client) is None
    assert api.get("/v1/brownout", VICTOR).json() == {"brownout": None}
    limiter.ops.tick()
    assert limiter.metrics().brownout_factor == 1.0
    assert delete(api, "/v1/brownout", CAROL).json() == {"cleared": False}

    entries = audit(api)
    assert [(e["principal"], e["role"], e["action"], e["target"], e["outcome"])
            for e in entries] == [
        ("carol", "admin", "brownout.set", "brownout", "ok"),
        ("carol", "admin", "brownout.clear", "brownout", "ok"),
        ("carol", "admin", "brownout.clear", "brownout", "ok"),
    ]  # fmt: skip
    assert entries[0]["detail"] == {**shown, "seconds": 900}
    assert [e["detail"] for e in entries[1:]] == [{"cleared": True}, {"cleared": False}]
    assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True


def test_a_new_brownout_replaces_the_one_in_force(api: Api, client: Any) -> None:
    put(api, "/v1/brownout", CAROL, json={"factor": 0.5, "seconds": 60})
    r = put(api, "/v1/brownout", CAROL, json={"factor": 0.25, "seconds": 120})
    assert r.status_code == 200
    assert r.json()["brownout"] == {**r.json()["brownout"], "tiers": [], "rules": []}
    stored = Layout().brownout(client)
    assert stored is not None and stored.factor == 0.25


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"factor": 0, "seconds": 60}, "'factor' must be a number above 0 and at most 1"),
        ({"factor": 1.5, "seconds": 60}, "at most 1"),
        ({"factor": -0.5, "seconds": 60}, "above 0"),
        ({"factor": "0.5", "seconds": 60}, "not '0.5'"),
        ({"factor": True, "seconds": 60}, "'factor' must be a number"),
        ({"seconds": 60}, "not None"),
        ({"factor": 0.5, "seconds": 0}, "'seconds' must be a number above 0"),
        ({"factor": 0.5, "seconds": -10}, "'seconds' must be a number above 0"),
        ({"factor": 0.5}, "'seconds' must be a number above 0, not None"),
    ],
)
def test_brownout_out_of_range_is_a_422_and_audited_as_refused(
    api: Api, client: Any, body: dict[str, Any], message: str
) -> None:
    r = put(api, "/v1/brownout", CAROL, json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and message in r.json()["detail"]
    assert Layout().brownout(client) is None
    (entry,) = audit(api)
    assert (entry["action"], entry["outcome"]) == ("brownout.set", "refused")
    assert entry["detail"]["reason"] == r.json()["detail"]


def test_malformed_brownout_bodies_are_422(api: Api) -> None:
    # JSON allows Infinity and NaN; neither is a duration or a factor
    for raw in (b'{"factor": NaN, "seconds": 60}', b'{"factor": 0.5, "seconds": Infinity}'):
        r = api.request("PUT", "/v1/brownout", CAROL, content=raw)
        assert r.status_code == 422, raw
    for body in ({"factor": 0.5, "seconds": 60, "tiers": "free"},
                 {"factor": 0.5, "seconds": 60, "rules": [1]}):  # fmt: skip
        r = put(api, "/v1/brownout", CAROL, json=body)
        assert r.status_code == 422 and "list of names" in r.json()["detail"]
    assert put(api, "/v1/brownout", CAROL, content=b"[0.5]").status_code == 422


# -- bans -------------------------------------------------------------------------------


def test_ban_add_list_and_lift_reach_the_limiters(api: Api, client: Any, limiter: Limiter) -> None:
    assert login(limiter, "203.0.113.7") == "allowed"
    body = {"rule": "login", "identity": "ip:203.0.113.7", "seconds": 900,
            "reason": "credential stuffing"}  # fmt: skip
    r = api.post("/v1/bans", CAROL, json=body)
    assert r.status_code == 201, r.text
    ban = r.json()["ban"]
    assert {k: ban[k] for k in ("rule", "identity", "reason")} == {
        "rule": "login", "identity": "203.0.113.7", "reason": "credential stuffing"
    }  # fmt: skip
    assert len(ban["digest"]) == 32 and ban["until"] > time.time() + 890
    assert api.get("/v1/bans", VICTOR).json() == {"bans": [ban]}
    (stored,) = Layout().list_bans(client, time.time())
    assert (stored.rule, stored.digest) == ("login", ban["digest"])

    limiter.ops.tick()
    assert login(limiter, "203.0.113.7") == "ban"
    assert login(limiter, "203.0.113.8") == "allowed"  # only that address

    r = delete(api, f"/v1/bans/login/{ban['digest']}", CAROL)
    assert r.status_code == 204 and r.content == b""
    assert api.get("/v1/bans", VICTOR).json() == {"bans": []}
    limiter.ops.tick()
    assert login(limiter, "203.0.113.7") == "allowed"

    r = delete(api, f"/v1/bans/login/{ban['digest']}", CAROL)
    assert r.status_code == 404 and r.json()["error"] == "not_found"

    entries = audit(api)
    assert [(e["principal"], e["action"], e["target"], e["outcome"]) for e in entries] == [
        ("carol", "ban.add", "ban:login", "ok"),
        ("carol", "ban.remove", "ban:login", "ok"),
        ("carol", "ban.remove", "ban:login", "refused"),
    ]
    assert entries[0]["detail"] == {**ban, "seconds": 900}
    assert entries[1]["detail"] == {"digest": ban["digest"], "identity": "203.0.113.7"}
    assert entries[2]["detail"]["error"] == "not_found"
    assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True


@pytest.mark.parametrize(
    ("prefix", "written", "shown", "peer", "neighbour"),
    [
        (64, "::ffff:198.51.100.8", "198.51.100.8", "::ffff:198.51.100.8", "198.51.100.9"),
        (64, "2001:db8::5", "2001:db8::5", "2001:db8::ffff", "2001:db8:0:1::5"),
        (48, "2001:db8::5", "2001:db8::5", "2001:db8:0:ffff::1", "2001:db8:1::5"),
        (128, "2001:db8::5", "2001:db8::5", "2001:db8::5", "2001:db8::6"),
        (64, "2001:db8:0:1::/64", "2001:db8:0:1::/64", "2001:db8:0:1::7", "2001:db8::7"),
    ],
)
def test_an_ip_ban_reaches_limiters_whatever_their_ipv6_prefix(
    api: Api, redis_url: str, prefix: int, written: str, shown: str, peer: str, neighbour: str
) -> None:
    lim = Limiter({**RULES, "identity": {"ipv6_prefix": prefix}}, redis_url=redis_url,
                  operations={"interval_seconds": 0})  # fmt: skip
    try:
        r = api.post("/v1/bans", CAROL, json={"rule": "login", "identity": f"ip:{written}",
                                              "seconds": 60})  # fmt: skip
        assert r.status_code == 201, r.text
        ban = r.json()["ban"]
        assert ban["identity"] == shown and len(ban["digest"]) == 32
        lim.ops.tick()
        assert login(lim, peer) == "ban" and login(lim, neighbour) == "allowed"
        assert delete(api, f"/v1/bans/login/{ban['digest']}", CAROL).status_code == 204
        lim.ops.tick()
        assert login(lim, peer) == "allowed"
    finally:
        lim.close()


def test_an_api_key_is_hashed_before_it_is_stored_shown_or_audited(
    api: Api, client: Any, limiter: Limiter
) -> None:
    r = api.post("/v1/bans", CAROL, json={"rule": "reports", "identity": f"api_key:{API_KEY}",
                                          "seconds": 60})  # fmt: skip
    assert r.status_code == 201, r.text
    ban = r.json()["ban"]
    assert ban["identity"] == f"h:{ban['digest']}" and ban["reason"] == "manual"

    limiter.ops.tick()
    with_key = RequestInfo(path="/reports", peer="198.51.100.4", headers={"x-api-key": API_KEY})
    other = RequestInfo(path="/reports", peer="198.51.100.4", headers={"x-api-key": "sk_other"})
    assert limiter.decide(with_key).action == "ban"
    assert limiter.decide(other).allowed

    # a typo in the kind: refused, and the key is neither echoed nor audited
    r = api.post("/v1/bans", CAROL, json={"rule": "reports", "identity": f"apikey:{API_KEY}",
                                          "seconds": 60})  # fmt: skip
    assert r.status_code == 422 and API_KEY not in r.text
    everything = [api.get("/v1/bans", VICTOR).text, json.dumps(audit(api))]
    everything += [str(client.dump(key)) for key in client.keys("*")]
    assert not [text for text in everything if API_KEY in text]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"rule": "login", "identity": "203.0.113.7", "seconds": 60}, "'identity' must be ip:"),
        ({"rule": "login", "identity": "ip:999.0.0.1", "seconds": 60}, "an IPv4 or IPv6 address"),
        ({"rule": "login", "identity": "h:abc", "seconds": 60}, "32-character hex digest"),
        ({"rule": "login", "identity": "ip:::", "seconds": 60}, "unspecified address"),
        ({"rule": "login", "identity": "ip:ff02::1", "seconds": 60}, "multicast"),
        ({"rule": "login", "identity": "ip:2001:db8::5/64", "seconds": 60}, "host bits set"),
        ({"rule": "login", "identity": "ip:::/0", "seconds": 60}, "names every client"),
        ({"rule": "login", "identity": "", "seconds": 60}, "'identity' must be"),
        ({"rule": "login", "identity": "ip:203.0.113.7", "seconds": 0}, "'seconds' must be"),
        ({"rule": "login", "identity": "ip:203.0.113.7"}, "'seconds' must be"),
        ({"identity": "ip:203.0.113.7", "seconds": 60}, "'rule' (the name of a rule)"),
    ],
)
def test_bad_bans_are_422_and_audited_as_refused(
    api: Api, client: Any, body: dict[str, Any], message: str
) -> None:
    r = api.post("/v1/bans", CAROL, json=body)
    assert r.status_code == 422
    assert r.json()["error"] == "invalid_request" and message in r.json()["detail"]
    assert Layout().list_bans(client, time.time()) == []
    (entry,) = audit(api)
    assert (entry["action"], entry["outcome"]) == ("ban.add", "refused")


def test_a_non_string_identity_is_422(api: Api) -> None:
    r = api.post("/v1/bans", CAROL, json={"rule": "login", "identity": 7, "seconds": 60})
    assert r.status_code == 422 and "'identity' must be a string" in r.json()["detail"]


# -- top offenders ----------------------------------------------------------------------


def test_top_returns_what_the_limiters_pushed(api: Api, client: Any) -> None:
    assert api.get("/v1/top", VICTOR).json() == {"rules": {}}
    now = time.time()
    layout = Layout()
    layout.push_top(client, "login", [("203.0.113.7", 5), ("203.0.113.8", 2)], now)
    layout.push_top(client, "login", [("203.0.113.8", 4)], now)
    layout.push_top(client, "reports", [("h:0123456789abcdef", 3)], now)
    layout.push_top(client, "login", [("198.51.100.1", 50)], now - 600)  # 10 minutes ago

    r = api.get("/v1/top", VICTOR)
    assert r.status_code == 200
    assert r.json() == {"rules": {
        "login": [{"identity": "203.0.113.8", "rejections": 6},
                  {"identity": "203.0.113.7", "rejections": 5}],
        "reports": [{"identity": "h:0123456789abcdef", "rejections": 3}],
    }}  # fmt: skip
    assert api.get("/v1/top?rule=login&n=1", VICTOR).json() == {
        "rules": {"login": [{"identity": "203.0.113.8", "rejections": 6}]}
    }
    wide = api.get("/v1/top?rule=login&minutes=15", VICTOR).json()["rules"]["login"]
    assert wide[0] == {"identity": "198.51.100.1", "rejections": 50}
    assert api.get("/v1/top?rule=nothing", VICTOR).json() == {"rules": {}}
    assert api.get("/v1/top?minutes=x", VICTOR).status_code == 422
    assert audit(api) == []  # reads are not audited


# -- roles, configuration, failures -----------------------------------------------------

CHANGES = [
    ("PUT", "/v1/brownout", {"factor": 0.5, "seconds": 60}),
    ("DELETE", "/v1/brownout", None),
    ("POST", "/v1/bans", {"rule": "login", "identity": "ip:203.0.113.7", "seconds": 60}),
    ("DELETE", f"/v1/bans/login/{'0' * 32}", None),
]


@pytest.mark.parametrize("token", [VICTOR, ALICE, BOB])
def test_only_admins_change_operations_state(api: Api, client: Any, token: str) -> None:
    for method, path, body in CHANGES:
        r = api.request(method, path, token, json=body)
        assert r.status_code == 403 and r.json()["error"] == "forbidden", (method, path)
    for path in ("/v1/brownout", "/v1/bans", "/v1/top"):
        assert api.get(path, token).status_code == 200
    assert client.keys("*") == []
    entries = audit(api)
    assert [(e["action"], e["target"], e["outcome"]) for e in entries] == [
        ("setBrownout", "/v1/brownout", "forbidden"),
        ("clearBrownout", "/v1/brownout", "forbidden"),
        ("addBan", "/v1/bans", "forbidden"),
        ("removeBan", f"/v1/bans/login/{'0' * 32}", "forbidden"),
    ]
    assert all("may not deploy" in e["detail"]["reason"] for e in entries)
    assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True


def test_without_ops_redis_every_operation_is_503(db_url: str) -> None:
    api = _api(db_url)
    try:
        for path in ("/v1/brownout", "/v1/bans", "/v1/top"):
            r = api.get(path, VICTOR)
            assert r.status_code == 503, path
            assert r.json()["error"] == "ops_unavailable" and "--ops-redis" in r.json()["detail"]
        for method, path, body in CHANGES:
            r = api.request(method, path, CAROL, json=body)
            assert r.status_code == 503 and r.json()["error"] == "ops_unavailable"
        entries = audit(api)
        assert [e["outcome"] for e in entries] == ["failed"] * len(CHANGES)
        assert {e["detail"]["error"] for e in entries} == {"ops_unavailable"}
        assert api.get("/v1/status", VICTOR).status_code == 200  # the rest still works
    finally:
        _close(api)


def test_a_redis_failure_is_a_502_problem_not_a_500(db_url: str) -> None:
    api = _api(db_url, ops_redis=f"redis://127.0.0.1:{_closed_port()}/0")
    try:
        for path in ("/v1/brownout", "/v1/bans", "/v1/top"):
            r = api.get(path, VICTOR)
            assert r.status_code == 502, path
            assert r.json()["error"] == "ops_failed"
            assert r.json()["detail"].startswith("the operations Redis failed to ")
            assert "ConnectionError" in r.json()["detail"]
        r = put(api, "/v1/brownout", CAROL, json={"factor": 0.5, "seconds": 60})
        assert r.status_code == 502 and "set the brownout" in r.json()["detail"]
        (entry,) = audit(api)
        assert (entry["action"], entry["outcome"]) == ("brownout.set", "failed")
        assert api.get("/v1/audit/verify", VICTOR).json()["ok"] is True
    finally:
        _close(api)


def test_ops_app_namespaces_the_keys(db_url: str, redis_url: str, client: Any) -> None:
    api = _api(db_url, ops_redis=redis_url, ops_app="shop")
    try:
        assert put(api, "/v1/brownout", CAROL, json={"factor": 0.5, "seconds": 60}).is_success
    finally:
        _close(api)
    assert Layout().brownout(client) is None
    shop = Layout("shop").brownout(client)
    assert shop is not None and shop.factor == 0.5


def test_openapi_document_lists_the_operations(api: Api) -> None:
    doc = api.get("/openapi.json").json()
    ours = {
        ("get", "/v1/brownout"): ("getBrownout", "200"),
        ("put", "/v1/brownout"): ("setBrownout", "200"),
        ("delete", "/v1/brownout"): ("clearBrownout", "200"),
        ("get", "/v1/bans"): ("listBans", "200"),
        ("post", "/v1/bans"): ("addBan", "201"),
        ("delete", "/v1/bans/{rule}/{digest}"): ("removeBan", "204"),
        ("get", "/v1/top"): ("topOffenders", "200"),
    }
    for (method, path), (operation, ok) in ours.items():
        op = doc["paths"][path][method]
        assert op["operationId"] == operation
        assert {ok, "401", "403", "503"} <= set(op["responses"])
        assert op["description"] == ("Roles: admin." if method != "get" else
                                     "Roles: admin, approver, editor, viewer.")  # fmt: skip
    remove = doc["paths"]["/v1/bans/{rule}/{digest}"]["delete"]
    assert [(p["name"], p["schema"]) for p in remove["parameters"]] == [
        ("rule", {"type": "string"}), ("digest", {"type": "string"})
    ]  # fmt: skip
    assert "content" not in remove["responses"]["204"]
    assert doc["paths"]["/v1/bans"]["post"]["requestBody"]["required"] is True
    request = doc["components"]["schemas"]["BrownoutRequest"]
    assert request["required"] == ["factor", "seconds"]
    assert request["properties"]["factor"] == {**request["properties"]["factor"],
                                               "exclusiveMinimum": 0, "maximum": 1}  # fmt: skip
    get_version = doc["paths"]["/v1/versions/{id}"]["get"]
    assert get_version["parameters"][0]["schema"] == {"type": "integer"}
    assert len({(ep.method, ep.path) for ep in ENDPOINTS}) == len(ENDPOINTS)


# -- the command --------------------------------------------------------------------------


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_control_rejects_an_ops_redis_that_is_not_redis() -> None:
    code, text = run("control", "--ops-redis", "http://127.0.0.1:6379")
    assert code == 2 and "--ops-redis: want one of redis://" in text


def test_control_serves_the_operations_on_ops_redis(
    db_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(self.config))
    monkeypatch.setenv("RATEMW_CONTROL_TOKENS", json.dumps(
        {"sha256:" + "0" * 64: {"principal": "nobody", "role": "viewer"}}))  # fmt: skip
    secret_url = redis_url.replace("redis://", "redis://:hunter2@", 1)
    code, text = run("control", "--db", db_url, "--port", "0", "--ops-redis", secret_url,
                     "--ops-app", "shop")  # fmt: skip
    assert code == 0, text
    assert "operations redis://:***@127.0.0.1:" in text and "hunter2" not in text
    (config,) = served
    service = config.app.state.service
    try:
        assert service.ops_layout.prefix == "ratemw:shop:"
    finally:
        service.close_ops()
        service.db.close()
    code, text = run("control", "--db", db_url, "--port", "0")
    assert code == 0 and "operations off" in text
    served[-1].app.state.service.db.close()
