"""Settings and URLconf of the Django app for tests/security (``manage.py runserver``).

``ALLOWED_HOSTS`` names ``api.example.com``: Django also serves its absolute form
``api.example.com.``. The login route ends in ``$`` (``re_path``), so it accepts a
trailing newline and an optional slash, as an application's own regex may.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import path, re_path

from tests.security.apps import MARKER, RULES

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["api.example.com", "127.0.0.1", "localhost"]
INSTALLED_APPS = ["ratemw_django"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "ratemw_django.RateLimitMiddleware",
]
ROOT_URLCONF = __name__
DATABASES: dict[str, object] = {}
USE_TZ = True
RATEMW = {"RULES": RULES}


def _view(name: str) -> Callable[[HttpRequest], HttpResponse]:
    def view(request: HttpRequest) -> HttpResponse:
        response = HttpResponse("view")
        response[MARKER] = name
        return response

    return view


def _health(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    re_path(r"^login/?$", _view("login")),
    path("oracle", _view("oracle")),
    path("hosted", _view("hosted")),
    path("health", _health),
]
