#!/usr/bin/env python
"""``python example_apps/django_app/manage.py runserver`` (or ``check --deploy``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_apps.django_app.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
