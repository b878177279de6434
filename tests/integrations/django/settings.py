"""Settings of the Django test project (applied by ``conftest.py`` with ``settings.configure``)."""

from __future__ import annotations

from typing import Any

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
        {"name": "streams", "match": {"path": "re:^/a?stream$"}, "concurrency": 1},
        {"name": "boom", "match": {"path": "/boom"}, "concurrency": 1},
        {"name": "named", "match": {"route": "named-view"}, "limit": "1/minute"},
    ],
}

SECRET_KEY = "ratemw-tests"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["ratemw_django"]
MIDDLEWARE = [
    "tests.integrations.django.views.FakeAuthenticationMiddleware",
    "ratemw_django.RateLimitMiddleware",
]
ROOT_URLCONF = "tests.integrations.django.urls"
DATABASES: dict[str, Any] = {}
USE_TZ = True
RATEMW: dict[str, Any] = {"RULES": RULES, "WORKERS": 1}
