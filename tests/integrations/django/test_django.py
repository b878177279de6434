from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.test import AsyncClient, Client, override_settings

from ratemw import AsyncLimiter, Limiter
from ratemw.testing import ManualClock
from ratemw_django import RateLimitMiddleware, ratelimit
from ratemw_django.decorators import registered_rules
from tests.integrations.django.settings import RULES


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    clock = ManualClock()
    with override_settings(RATEMW={"RULES": RULES, "WORKERS": 1, "OPTIONS": {"clock": clock}}):
        yield clock


def problem(response: Any) -> dict[str, Any]:
    assert response["Content-Type"] == "application/problem+json"
    body: dict[str, Any] = json.loads(response.content)
    return body


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# -- allowed and rejected ------------------------------------------------------


def test_allowed_response_carries_ratelimit_headers(clock: ManualClock) -> None:
    response = Client().post("/login")
    assert response.status_code == 200
    assert response.content == b"welcome"
    assert response["RateLimit-Policy"] == '"login";q=2;w=60'
    assert response["RateLimit"].startswith('"login";r=1;')


def test_over_the_limit_is_429_with_retry_after_and_problem_json(clock: ManualClock) -> None:
    client = Client()
    assert [client.post("/login").status_code for _ in range(2)] == [200, 200]
    rejected = client.post("/login")
    assert rejected.status_code == 429
    assert int(rejected["Retry-After"]) >= 1
    assert rejected["RateLimit"].startswith('"login";r=0;')
    body = problem(rejected)
    assert body["status"] == 429
    assert body["violated-policies"] == ["login"]
    clock.advance(30)  # the bucket refills one token every 30 s
    assert client.post("/login").status_code == 200


def test_async_stack_allows_and_rejects(clock: ManualClock) -> None:
    async def flow() -> list[Any]:
        client = AsyncClient()
        return [await client.post("/login") for _ in range(3)]

    ok, _, rejected = run(flow())
    assert ok.status_code == 200
    assert ok["RateLimit-Policy"] == '"login";q=2;w=60'
    assert rejected.status_code == 429
    assert problem(rejected)["violated-policies"] == ["login"]


def test_unlimited_path_has_no_headers(clock: ManualClock) -> None:
    response = Client().get("/free")
    assert response.status_code == 200
    assert "RateLimit" not in response


def test_denylisted_address_gets_403(clock: ManualClock) -> None:
    response = Client().get("/free", REMOTE_ADDR="203.0.113.9")
    assert response.status_code == 403
    assert problem(response)["status"] == 403
    assert "Retry-After" not in response


def test_spoofed_forwarded_for_changes_nothing_without_trusted_proxies(
    clock: ManualClock,
) -> None:
    client = Client()
    client.post("/login")
    client.post("/login")
    spoofed = client.post("/login", headers={"X-Forwarded-For": "198.51.100.1"})
    assert spoofed.status_code == 429
    # Nor does it put a client on the deny list.
    assert client.get("/free", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 200


def test_user_identity_comes_from_request_user(clock: ManualClock) -> None:
    client = Client()
    alice = [
        client.get("/search/x", headers={"X-Test-User": "alice"}).status_code for _ in range(3)
    ]
    assert alice == [200, 200, 429]
    assert client.get("/search/x", headers={"X-Test-User": "bob"}).status_code == 200


def test_async_user_identity(clock: ManualClock) -> None:
    async def flow() -> list[int]:
        client = AsyncClient()
        codes = [(await client.get("/search/x", headers={"X-Test-User": "al"})).status_code]
        codes.append((await client.get("/search/x", headers={"X-Test-User": "al"})).status_code)
        codes.append((await client.get("/search/x", headers={"X-Test-User": "al"})).status_code)
        codes.append((await client.get("/search/x", headers={"X-Test-User": "bo"})).status_code)
        return codes

    assert run(flow()) == [200, 200, 429, 200]


# -- concurrency slots -----------------------------------------------------------


def test_streamed_body_holds_its_slot_until_the_last_chunk(clock: ManualClock) -> None:
    client = Client()
    first = client.get("/stream")
    assert first.status_code == 200
    assert first.streaming
    chunks = iter(first.streaming_content)
    assert next(chunks) == b"one "
    second = client.get("/stream")
    assert second.status_code == 429
    assert problem(second)["violated-policies"] == ["streams"]
    assert b"".join(chunks) == b"two three"
    third = client.get("/stream")
    assert third.status_code == 200
    assert b"".join(third.streaming_content) == b"one two three"


def test_async_streamed_body_holds_its_slot_until_the_last_chunk(clock: ManualClock) -> None:
    async def flow() -> None:
        client = AsyncClient()
        first = await client.get("/astream")
        assert first.status_code == 200
        assert first.is_async
        chunks = aiter(first.streaming_content)
        assert await anext(chunks) == b"one "
        second = await client.get("/astream")
        assert second.status_code == 429
        rest = [chunk async for chunk in chunks]
        assert rest == [b"two ", b"three"]
        third = await client.get("/astream")
        assert third.status_code == 200
        assert [c async for c in third.streaming_content] == [b"one ", b"two ", b"three"]

    run(flow())


def test_closing_an_unread_stream_releases_its_slot(clock: ManualClock) -> None:
    client = Client()
    first = client.get("/stream")
    assert client.get("/stream").status_code == 429
    first.close()  # what a WSGI server does when the client goes away
    assert client.get("/stream").status_code == 200


def test_exception_in_the_view_releases_the_slot(clock: ManualClock) -> None:
    client = Client(raise_request_exception=False)
    assert client.get("/boom").status_code == 500
    assert client.get("/boom").status_code == 500  # admitted again: not 429


def test_exception_raised_through_the_middleware_releases_the_slot(clock: ManualClock) -> None:
    def view(request: Any) -> Any:
        raise RuntimeError("raised past the handler")

    middleware = RateLimitMiddleware(view)
    request = Client().get("/free").wsgi_request
    request.path_info = request.path = "/boom"
    request.META["PATH_INFO"] = "/boom"
    for _ in range(2):  # a held slot would turn the second call into a 429 response
        with pytest.raises(RuntimeError):
            middleware(request)


# -- rules in code, routes, handlers ---------------------------------------------


def test_decorator_records_a_route_rule() -> None:
    rule = next(r for r in registered_rules() if r["name"].endswith("views.decorated"))
    assert rule == {
        "name": "tests.integrations.django.views.decorated",
        "match": {"route": "tests.integrations.django.views.decorated"},
        "limit": "1/minute",
        "identity": "ip",
        "lease": {"size": 1},
    }


def test_decorator_rule_limits_its_view(clock: ManualClock) -> None:
    client = Client()
    assert client.get("/decorated").status_code == 200
    rejected = client.get("/decorated")
    assert rejected.status_code == 429
    assert problem(rejected)["violated-policies"] == ["tests.integrations.django.views.decorated"]
    assert client.get("/free").status_code == 200


def test_rule_naming_a_url_name(clock: ManualClock) -> None:
    client = Client()
    assert client.get("/named").status_code == 200
    assert client.get("/named").status_code == 429


def test_same_view_decorated_twice_gets_two_rules() -> None:
    def view(request: Any) -> Any:
        return None

    ratelimit("5/minute", identity="ip")(view)
    ratelimit("50/minute", identity="user", methods=["POST"])(view)
    ratelimit("5/minute", identity="ip")(view)  # declared again: nothing new
    names = [r["name"] for r in registered_rules() if "same_view_decorated" in r["name"]]
    assert [n.rsplit(".", 1)[-1] for n in names] == ["view", "view#2"]


def test_replaced_rejection_handler() -> None:
    conf = {"RULES": RULES, "REJECT_HANDLER": "tests.integrations.django.views.teapot"}
    with override_settings(RATEMW=conf):
        client = Client()
        client.get("/named")
        response = client.get("/named")
    assert response.status_code == 418
    assert response.content == b"slow down: named"


def test_failing_limiter_lets_requests_through(
    clock: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(self: Any, info: Any) -> Any:
        raise RuntimeError("engine exploded")

    async def aboom(self: Any, info: Any) -> Any:
        raise RuntimeError("engine exploded")

    monkeypatch.setattr(Limiter, "decide", boom)
    monkeypatch.setattr(AsyncLimiter, "decide", aboom)
    with caplog.at_level(logging.ERROR, logger="ratemw.django"):
        assert Client().post("/login").status_code == 200
        assert run(AsyncClient().post("/login")).status_code == 200
    assert "decide failed (RuntimeError at " in caplog.text


def test_disabled_allows_everything() -> None:
    with override_settings(RATEMW={"RULES": RULES, "ENABLED": False}):
        client = Client()
        assert {client.post("/login").status_code for _ in range(5)} == {200}


def test_invalid_rules_fail_at_start_up(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("version: 1\nrules:\n  - name: x\n    limit: 0/minute\n")
    with override_settings(RATEMW={"RULES": bad}), pytest.raises(ImproperlyConfigured):
        Client().get("/free")


def test_unknown_setting_is_an_error() -> None:
    with override_settings(RATEMW={"RULES": RULES, "RULE": 1}), pytest.raises(ImproperlyConfigured):
        Client().get("/free")


# -- system checks ------------------------------------------------------------------


def run_checks(deploy: bool = False) -> dict[str, list[checks.CheckMessage]]:
    found: dict[str, list[checks.CheckMessage]] = {}
    for message in checks.run_checks(tags=["ratemw"], include_deployment_checks=deploy):
        found.setdefault(message.id, []).append(message)
    return found


def test_checks_pass_on_a_good_setup() -> None:
    assert run_checks() == {}


def test_e001_rules_not_set() -> None:
    with override_settings(RATEMW={}):
        (error,) = run_checks()["ratemw.E001"]
    assert "RULES" in error.msg


def test_e001_invalid_rules_name_file_and_line_in_the_hint(tmp_path: Path) -> None:
    bad = tmp_path / "ratelimits.yaml"
    bad.write_text(
        "version: 1\nrules:\n  - name: login\n    match: {path: /login}\n    limit: 0/minute\n"
    )
    with override_settings(RATEMW={"RULES": bad}):
        errors = run_checks()["ratemw.E001"]
    assert errors
    assert all(e.level == checks.ERROR for e in errors)
    assert any(e.hint.startswith(f"{bad}:5:") for e in errors), [e.hint for e in errors]


def test_e001_missing_file(tmp_path: Path) -> None:
    with override_settings(RATEMW={"RULES": tmp_path / "nope.yaml"}):
        (error,) = run_checks()["ratemw.E001"]
    assert "nope.yaml" in error.msg


def test_e002_middleware_missing() -> None:
    with override_settings(MIDDLEWARE=[]):
        (error,) = run_checks()["ratemw.E002"]
    assert "not in MIDDLEWARE" in error.msg


def test_e002_middleware_before_authentication() -> None:
    order = [
        "ratemw_django.RateLimitMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
    ]
    with override_settings(MIDDLEWARE=order):
        (error,) = run_checks()["ratemw.E002"]
    assert "before AuthenticationMiddleware" in error.msg
    with override_settings(MIDDLEWARE=order[::-1]):
        assert "ratemw.E002" not in run_checks()


def test_w001_memory_store_with_several_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "ratemw.W001" not in run_checks(deploy=True)  # WORKERS: 1
    with override_settings(RATEMW={"RULES": RULES, "WORKERS": 4}):
        (warning,) = run_checks(deploy=True)["ratemw.W001"]
    assert "4 worker processes" in warning.msg
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    with override_settings(RATEMW={"RULES": RULES}):
        assert "3 worker" in run_checks(deploy=True)["ratemw.W001"][0].msg
    with override_settings(RATEMW={"RULES": RULES, "REDIS_URL": "redis://localhost:6379/0"}):
        assert "ratemw.W001" not in run_checks(deploy=True)
    assert "ratemw.W001" not in run_checks()  # deploy checks only


def test_w002_no_trusted_proxies() -> None:
    (warning,) = run_checks(deploy=True)["ratemw.W002"]
    assert warning.level == checks.WARNING
    trusted = {**RULES, "identity": {"trusted_proxies": ["10.0.0.0/8"]}}
    with override_settings(RATEMW={"RULES": trusted, "WORKERS": 1}):
        assert run_checks(deploy=True) == {}


def test_async_exception_in_the_view_releases_the_slot(clock: ManualClock) -> None:
    async def flow() -> list[int]:
        client = AsyncClient(raise_request_exception=False)
        return [(await client.get("/boom")).status_code for _ in range(2)]

    assert run(flow()) == [500, 500]


def test_tier_resolver_sees_the_user() -> None:
    tiered = {
        "version": 1,
        "tiers": ["free", "pro"],
        "rules": [
            {
                "name": "t",
                "match": {"path": "/free"},
                "limit": {"free": "1/minute", "pro": "3/minute"},
            }
        ],
    }
    conf = {"RULES": tiered, "TIER_RESOLVER": "tests.integrations.django.views.tier_for"}
    with override_settings(RATEMW=conf):
        client = Client()
        vip = [client.get("/free", headers={"X-Test-User": "vip"}).status_code for _ in range(4)]
        assert vip == [200, 200, 200, 429]
        assert [client.get("/free").status_code for _ in range(2)] == [200, 429]
