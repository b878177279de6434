from __future__ import annotations

import pytest
from django.test import AsyncClient, Client, override_settings

from tests.integrations.store_down import RULES, dead_redis_url

# The test project routes /login, /search/<q>, /stream, ...: reuse /login and /stream.
DOWN_RULES = {
    "version": 1,
    "rules": [
        {**RULES["rules"][0], "match": {"path": "/login"}},
        {**RULES["rules"][1], "match": {"path": "/search/**"}},
        {**RULES["rules"][2], "match": {"path": "/free"}},
    ],
}
EXPECTED = {
    "/login": [200, 200, 200, 429, 429],
    "/search/x": [503] * 5,
    "/free": [200] * 5,
}


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_django_with_redis_down_never_answers_500(path: str) -> None:
    settings = {"RULES": DOWN_RULES, "REDIS_URL": dead_redis_url(), "WORKERS": 1}
    with override_settings(RATEMW=settings):
        client = Client()
        statuses = [client.get(path).status_code for _ in range(5)]
    assert statuses == EXPECTED[path]


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_async_django_with_redis_down_never_answers_500(path: str) -> None:
    import asyncio

    async def run() -> list[int]:
        client = AsyncClient()
        return [(await client.get(path)).status_code for _ in range(5)]

    settings = {"RULES": DOWN_RULES, "REDIS_URL": dead_redis_url(), "WORKERS": 1}
    with override_settings(RATEMW=settings):
        assert asyncio.run(run()) == EXPECTED[path]
