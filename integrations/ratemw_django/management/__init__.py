"""Management commands of ratemw_django."""

from __future__ import annotations
