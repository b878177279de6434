"""Tests of live rules (ratemw.config), and helpers they share."""

from __future__ import annotations

from ratemw import Limiter, RequestInfo

#: generous deadline for background work on a loaded machine; the happy path is ms
DEADLINE = 10.0


def rules_yaml(limit: str = "2/minute", name: str = "api", path: str = "/api") -> bytes:
    """A one-rule document limiting ``path`` per client IP."""
    return (
        f"version: 1\nrules:\n  - name: {name}\n    match: {{path: {path}}}\n    limit: {limit}\n"
    ).encode()


def admitted(limiter: Limiter, n: int, path: str = "/api", peer: str = "192.0.2.1") -> int:
    """How many of ``n`` requests from one client ``limiter`` lets through."""
    info = RequestInfo(path=path, peer=peer)
    return sum(limiter.decide(info).allowed for _ in range(n))
