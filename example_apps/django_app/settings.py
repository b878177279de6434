"""Settings of the Django example (no database: the views need none)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = "example-only-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["ratemw_django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    # After AuthenticationMiddleware when there is one: identity "user" reads request.user.
    "ratemw_django.RateLimitMiddleware",
]
ROOT_URLCONF = "example_apps.django_app.urls"
WSGI_APPLICATION = None
DATABASES: dict[str, object] = {}
USE_TZ = True

RATEMW = {
    "RULES": BASE_DIR.parent / "ratelimits.yaml",
    # e.g. "redis://localhost:6379/0" to share limits across processes; unset: per process
    "REDIS_URL": os.environ.get("RATEMW_REDIS_URL") or None,
    "TIER_RESOLVER": None,  # e.g. "myapp.limits.tier_for"
    "REJECT_HANDLER": None,  # e.g. "myapp.limits.on_reject"
}
