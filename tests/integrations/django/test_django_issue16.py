"""Django and issue #16: a failing ``request.user`` switches off no rule; every dotted
path of ``RATEMW`` is checked (``ratemw.E003``); ``manage.py ratemw explain`` shows the
``@ratelimit`` rules; a refusal's ``RateLimit`` ``t`` is its ``Retry-After``."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient, Client, override_settings

from ratemw import errors
from ratemw.testing import ManualClock
from ratemw_django import RateLimitMiddleware
from tests.integrations.django.settings import RULES

BROKEN = {"X-Test-User": "!broken"}
SOURCE = "request.user"


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    clock = ManualClock()
    with override_settings(RATEMW={"RULES": RULES, "WORKERS": 1, "OPTIONS": {"clock": clock}}):
        yield clock


@pytest.fixture(autouse=True)
def fresh_causes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(errors, "_causes", set())


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    assert "decide failed" not in caplog.text
    return [r.getMessage() for r in caplog.records if SOURCE in r.getMessage()]


def ratemw_checks() -> list[checks.CheckMessage]:
    return list(checks.run_checks(tags=["ratemw"]))


# -- a failing request.user -----------------------------------------------------------


def test_a_failing_user_falls_back_and_is_logged_once(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = Client()
    with caplog.at_level(logging.ERROR, logger="ratemw"):
        search = [client.get("/search/x", headers=BROKEN).status_code for _ in range(3)]
        login = [client.post("/login", headers=BROKEN).status_code for _ in range(3)]
    assert search == [200, 200, 429]  # identity user: keyed by the address instead
    assert login == [200, 200, 429]  # identity ip: as always
    lines = failure_lines(caplog)
    assert len(lines) == 1 and "ConnectionError" in lines[0], lines


def test_async_a_failing_user_falls_back(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def flow() -> list[int]:
        client = AsyncClient()
        return [(await client.get("/search/x", headers=BROKEN)).status_code for _ in range(3)]

    with caplog.at_level(logging.ERROR, logger="ratemw"):
        assert asyncio.run(flow()) == [200, 200, 429]
    assert len(failure_lines(caplog)) == 1


def test_on_identity_error_skip(caplog: pytest.LogCaptureFixture) -> None:
    rules: dict[str, Any] = {**RULES, "defaults": {"on_identity_error": "skip"}}
    with override_settings(RATEMW={"RULES": rules, "WORKERS": 1}):
        client = Client()
        assert [client.get("/search/x", headers=BROKEN).status_code for _ in range(4)] == [200] * 4
        assert [client.post("/login").status_code for _ in range(3)] == [200, 200, 429]


# -- every dotted path of RATEMW is checked --------------------------------------------


def test_e003_a_path_that_does_not_import_is_an_error_with_the_path() -> None:
    conf = {"RULES": RULES, "WORKERS": 1, "TIER_RESOLVER": "myapp.limits.tier_for"}
    with override_settings(RATEMW=conf):
        found = [m for m in ratemw_checks() if m.id == "ratemw.E003"]
        with pytest.raises(ImproperlyConfigured, match=r"myapp\.limits\.tier_for"):
            RateLimitMiddleware(lambda request: None)
    assert len(found) == 1
    assert found[0].level == checks.ERROR
    assert "TIER_RESOLVER" in found[0].msg and "myapp.limits.tier_for" in found[0].msg


def test_e003_a_path_to_something_not_callable() -> None:
    conf = {"RULES": RULES, "WORKERS": 1,
            "REJECT_HANDLER": "tests.integrations.django.settings.SECRET_KEY"}  # fmt: skip
    with override_settings(RATEMW=conf):
        (found,) = [m for m in ratemw_checks() if m.id == "ratemw.E003"]
    assert "REJECT_HANDLER" in found.msg and "callable" in found.msg


def test_e003_good_paths_pass() -> None:
    conf = {"RULES": RULES, "WORKERS": 1,
            "TIER_RESOLVER": "tests.integrations.django.views.tier_for",
            "REJECT_HANDLER": "tests.integrations.django.views.teapot"}  # fmt: skip
    with override_settings(RATEMW=conf):
        assert [m for m in ratemw_checks() if m.id == "ratemw.E003"] == []


# -- manage.py ratemw ------------------------------------------------------------------


def explain(*argv: str) -> str:
    out = io.StringIO()
    call_command("ratemw", "explain", *argv, stdout=out)
    return out.getvalue()


def test_explain_shows_ratelimit_decorator_rules(clock: ManualClock) -> None:
    text = explain("--method", "GET", "--path", "/decorated")
    # the @ratelimit rule, matched by the route the URLconf resolves the path to
    assert "1. tests.integrations.django.views.decorated: 1/minute" in text
    assert "applies, in order:" in text
    other = explain("--method", "POST", "--path", "/login")
    assert "1. login:" in other
    assert "- tests.integrations.django.views.decorated: route" in other


def test_check_counts_ratelimit_rules(clock: ManualClock) -> None:
    out = io.StringIO()
    call_command("ratemw", "check", stdout=out)
    assert "from @ratelimit" in out.getvalue()
    assert " 0 of them" not in out.getvalue()


def test_explain_usage_and_rules_errors_exit_2_and_1() -> None:
    with pytest.raises(CommandError) as usage:
        call_command("ratemw", "explain", "--method", "GET", stdout=io.StringIO())
    assert usage.value.returncode == 2  # --path is required
    invalid_rules = {"RULES": {"version": 1, "rules": [{"name": "x"}]}}
    with override_settings(RATEMW=invalid_rules), pytest.raises(CommandError) as invalid:
        call_command("ratemw", "explain", "--path", "/x", stderr=io.StringIO())
    assert invalid.value.returncode == 1


# -- RateLimit t= on a refusal ----------------------------------------------------------


def test_refusal_t_is_the_retry_after(clock: ManualClock) -> None:
    client = Client()
    assert [client.post("/login").status_code for _ in range(2)] == [200, 200]
    refused = client.post("/login")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"  # 2/minute: a token every 30 s
    assert refused["RateLimit"] == '"login";r=0;t=30'
