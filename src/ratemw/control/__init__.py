"""``ratemw control``: the control plane that reviews, rolls out and audits rule sets.

Versions of a rules file are proposed, approved by a second principal, rolled out in
stages (shadow, an enforced share, enforce) and rolled back, through a REST API
(:mod:`ratemw.control.app`). Every action lands in a hash-chained audit log
(:mod:`ratemw.control.audit`). Each stage is published to the configured targets with
:func:`ratemw.config.publish.publish`.

Importing this package needs no extra; the web app imports Starlette (and the command
uvicorn) only when it is built or started.
"""

from __future__ import annotations

from ratemw.errors import RatemwError

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_PROPOSAL_BYTES",
    "DEFAULT_MAX_TRAFFIC_BYTES",
    "ControlError",
]

DEFAULT_MAX_PROPOSAL_BYTES = 1024 * 1024  # a rules document: ample for thousands of rules
DEFAULT_MAX_BODY_BYTES = 64 * 1024  # every other request body (JSON)
DEFAULT_MAX_TRAFFIC_BYTES = 256 * 1024 * 1024  # a recording that previews read (--traffic)


class ControlError(RatemwError):
    """The control plane cannot start or run: a bad URL, token file or database."""
