"""The console: a browser admin UI for the control service, served at ``/ui/``.

Server-rendered pages (Jinja2) that work without JavaScript, over the same actions,
roles and audit log as the REST API (:mod:`ratemw.control.service`); a small script of
our own only refreshes live parts and validates drafts as you type. See
docs/console.md. Starlette and Jinja2 (the ``control`` extra) are imported when the
routes are built.
"""

from __future__ import annotations

from ratemw.control.ui.config import ConsoleConfig
from ratemw.control.ui.routes import console_mount

__all__ = ["ConsoleConfig", "console_mount"]
