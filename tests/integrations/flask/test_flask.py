from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from ratemw import Decision, Limiter
from ratemw.testing import ManualClock
from ratemw_flask import RateMW, RateMWState

with warnings.catch_warnings():  # WebOb imports cgi, deprecated since Python 3.11
    warnings.simplefilter("ignore", DeprecationWarning)
    import webtest

RULES: dict[str, Any] = {
    "version": 1,
    "deny": ["203.0.113.0/24"],
    "rules": [
        {"name": "login", "match": {"methods": ["POST"], "path": "/login"}, "limit": "2/minute"},
        {
            "name": "search",
            "match": {"path": "/search/**"},
            "identity": "user",
            "limit": "2/minute",
        },
        {"name": "stream", "match": {"path": "/stream"}, "concurrency": 1},
        {"name": "boom", "match": {"path": "/boom"}, "concurrency": 1},
        {"name": "everything", "match": {"path": "/exempt"}, "limit": "1/minute"},
    ],
}


def user_from_header() -> str | None:
    return request.headers.get("X-Test-User")


def make_app(clock: ManualClock, **options: Any) -> Flask:
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = RULES
    ratemw = RateMW(clock=clock, **options)

    @app.post("/login")
    def login() -> str:
        return "welcome"

    @app.get("/search/<q>")
    def search(q: str) -> str:
        return f"results for {q}"

    @app.get("/stream")
    def stream() -> Response:
        def chunks() -> Iterator[bytes]:
            yield from (b"one ", b"two ", b"three")

        return Response(chunks())

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("the view failed")

    @app.get("/decorated")
    @ratemw.limit("1/minute", identity="ip", lease={"size": 1})
    def decorated() -> str:
        return "decorated"

    @ratemw.exempt
    @app.get("/exempt")
    def exempt() -> str:
        return "exempt"

    @app.get("/free")
    def free() -> str:
        return "free"

    ratemw.init_app(app)
    return app


@pytest.fixture
def app(clock: ManualClock) -> Flask:
    return make_app(clock)


def problem(response: Any) -> dict[str, Any]:
    assert response.headers["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = response.get_json(force=True)
    return body


# -- set-up -------------------------------------------------------------------------


def test_extension_state_holds_the_limiter(app: Flask) -> None:
    state = app.extensions["ratemw"]
    assert isinstance(state, RateMWState)
    assert isinstance(state.limiter, Limiter)


def test_config_comes_from_the_ratemw_namespace(clock: ManualClock, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\nrules:\n  - {name: a, match: {path: /a}, limit: 1/minute}\n")
    app = Flask(__name__)
    app.config.update(RATEMW_RULES=str(rules), RATEMW_ENABLED=False)
    RateMW(app, clock=clock)
    state = app.extensions["ratemw"]
    assert [r.name for r in state.limiter.snapshot.ruleset.rules] == ["a"]
    assert not state.limiter.enabled


def test_rules_are_required() -> None:
    with pytest.raises(RuntimeError, match="RATEMW_RULES"):
        RateMW(Flask(__name__))


# -- allowed and rejected -----------------------------------------------------------


def test_allowed_response_carries_ratelimit_headers(app: Flask) -> None:
    response = app.test_client().post("/login")
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"login";q=2;w=60'
    assert response.headers["RateLimit"].startswith('"login";r=1;')


def test_over_the_limit_is_429_with_retry_after_and_problem_json(
    app: Flask, clock: ManualClock
) -> None:
    client = app.test_client()
    assert [client.post("/login").status_code for _ in range(2)] == [200, 200]
    rejected = client.post("/login")
    assert rejected.status_code == 429
    assert int(rejected.headers["Retry-After"]) >= 1
    body = problem(rejected)
    assert body["status"] == 429
    assert body["violated-policies"] == ["login"]
    clock.advance(30)
    assert client.post("/login").status_code == 200


def test_webtest_allowed_then_rejected(app: Flask) -> None:
    web = webtest.TestApp(app)
    ok = web.post("/login")
    assert ok.headers["RateLimit-Policy"] == '"login";q=2;w=60'
    web.post("/login")
    rejected = web.post("/login", status=429)
    assert rejected.content_type == "application/problem+json"
    assert rejected.json["violated-policies"] == ["login"]
    assert "Retry-After" in rejected.headers


def test_denylisted_address_gets_403(app: Flask) -> None:
    response = app.test_client().get("/free", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert response.status_code == 403
    assert problem(response)["status"] == 403


def test_spoofed_forwarded_for_changes_nothing_without_trusted_proxies(app: Flask) -> None:
    client = app.test_client()
    client.post("/login")
    client.post("/login")
    assert client.post("/login", headers={"X-Forwarded-For": "198.51.100.1"}).status_code == 429
    assert client.get("/free", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200


def test_user_getter_runs_in_a_request_context(clock: ManualClock) -> None:
    app = make_app(clock, user_getter=f"{__name__}.user_from_header")
    client = app.test_client()
    alice = [client.get("/search/x", headers={"X-Test-User": "al"}).status_code for _ in "abc"]
    assert alice == [200, 200, 429]
    assert client.get("/search/x", headers={"X-Test-User": "bo"}).status_code == 200


def test_without_user_getter_users_fall_back_to_ip(app: Flask) -> None:
    client = app.test_client()
    codes = [client.get("/search/x", headers={"X-Test-User": u}).status_code for u in "abc"]
    assert codes == [200, 200, 429]


# -- concurrency slots ----------------------------------------------------------------


def test_streamed_body_holds_its_slot_until_it_ends(app: Flask) -> None:
    client = app.test_client()
    first = client.get("/stream", buffered=False)
    assert first.status_code == 200
    chunks = first.iter_encoded()
    assert next(chunks) == b"one "
    second = client.get("/stream")
    assert second.status_code == 429
    assert problem(second)["violated-policies"] == ["stream"]
    assert b"".join(chunks) == b"two three"
    first.close()  # the server closes the body after the last chunk (PEP 3333)
    assert client.get("/stream").status_code == 200


def test_webtest_stream_is_released_after_it_was_sent(app: Flask) -> None:
    web = webtest.TestApp(app)
    assert web.get("/stream").body == b"one two three"
    assert web.get("/stream").body == b"one two three"


def test_exception_in_the_view_releases_the_slot(app: Flask) -> None:
    client = app.test_client()
    # buffered: the test client reads and closes the body, as a server does.
    assert client.get("/boom", buffered=True).status_code == 500
    assert client.get("/boom", buffered=True).status_code == 500  # admitted again: not 429


def test_exception_propagating_through_the_middleware_releases_the_slot(app: Flask) -> None:
    app.config["PROPAGATE_EXCEPTIONS"] = True
    client = app.test_client()
    for _ in range(2):
        with pytest.raises(RuntimeError, match="the view failed"):
            client.get("/boom")


# -- rules in code, exempt views, handlers ------------------------------------------------


def test_decorator_rule_limits_its_endpoint(app: Flask) -> None:
    client = app.test_client()
    assert client.get("/decorated").status_code == 200
    rejected = client.get("/decorated")
    assert rejected.status_code == 429
    (name,) = problem(rejected)["violated-policies"]
    assert name.endswith("make_app.<locals>.decorated")
    assert client.get("/free").status_code == 200


def test_decorator_rules_are_matched_by_endpoint(app: Flask) -> None:
    app.test_client().get("/free")  # the first request merges the rules
    rules = app.extensions["ratemw"].limiter.snapshot.ruleset.rules
    assert [r.match.route for r in rules if r.match.route] == ["decorated"]


def test_exempt_view_is_never_limited(app: Flask) -> None:
    client = app.test_client()
    assert {client.get("/exempt").status_code for _ in range(3)} == {200}
    denied = client.get("/exempt", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert denied.status_code == 200
    assert "RateLimit" not in denied.headers


def test_replaced_rejection_handler(clock: ManualClock) -> None:
    def slow_down(decision: Decision) -> Any:
        return {"slow down": list(decision.violated), "path": request.path}, 418

    app = make_app(clock, reject_handler=slow_down)
    client = app.test_client()
    client.get("/decorated")
    response = client.get("/decorated")
    assert response.status_code == 418
    assert response.json is not None
    assert response.json["path"] == "/decorated"


def test_failing_limiter_lets_requests_through(
    app: Flask, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(self: Any, info: Any) -> Any:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(Limiter, "decide", boom)
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        assert app.test_client().post("/login").status_code == 200
    assert "decide failed" in caplog.text


def test_disabled_allows_everything(clock: ManualClock) -> None:
    app = make_app(clock, enabled=False)
    client = app.test_client()
    assert {client.post("/login").status_code for _ in range(5)} == {200}


# -- command line ----------------------------------------------------------------------------


def test_cli_check_and_explain(clock: ManualClock, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - {name: login, match: {path: /login}, limit: 1/second}\n"
    )
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = rules
    RateMW(app, clock=clock)
    runner = app.test_cli_runner()
    checked = runner.invoke(args=["ratemw", "check"])
    assert checked.exit_code == 0, checked.output
    assert "ok: 0 error(s)" in checked.output
    explained = runner.invoke(args=["ratemw", "explain", "--method", "POST", "--path", "/login"])
    assert explained.exit_code == 0, explained.output
    assert "1. login" in explained.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules:\n  - {name: x, match: {path: /x}, limit: 0/s}\n")
    failed = runner.invoke(args=["ratemw", "check", str(bad)])
    assert failed.exit_code == 1
    assert f"{bad}:3:" in failed.output


def test_cli_check_reports_bad_decorator_rules(clock: ManualClock, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "version: 1\nrules:\n  - {name: login, match: {path: /login}, limit: 1/second}\n"
    )
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = rules
    ratemw = RateMW(app, clock=clock)

    @app.get("/broken")
    @ratemw.limit("0/minute")
    def broken() -> str:
        return "never"

    result = app.test_cli_runner().invoke(args=["ratemw", "check"])
    assert result.exit_code == 1
    assert "broken" in result.output


def test_cli_needs_a_file_when_rules_are_a_mapping(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["ratemw", "check"])
    assert result.exit_code == 2
    assert "not a file" in result.output
