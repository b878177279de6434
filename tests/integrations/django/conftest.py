"""Configures Django for this folder only (no DJANGO_SETTINGS_MODULE for the others)."""

from __future__ import annotations

import django
from django.conf import settings

from tests.integrations.django import settings as test_settings

if not settings.configured:
    settings.configure(**{k: v for k, v in vars(test_settings).items() if k.isupper()})
    django.setup()
