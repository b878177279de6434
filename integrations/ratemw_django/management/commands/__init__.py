"""``manage.py ratemw``."""

from __future__ import annotations
