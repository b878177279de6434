"""Helpers for the control-plane tests: tokens of four principals and a sync API client."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ratemw.control.auth import Principal, TokenTable, token_digest

# raw token -> (principal, role); only digests go into the table
PEOPLE = {
    "tok-alice": ("alice", "editor"),
    "tok-bob": ("bob", "approver"),
    "tok-carol": ("carol", "admin"),
    "tok-victor": ("victor", "viewer"),
}
ALICE, BOB, CAROL, VICTOR = "tok-alice", "tok-bob", "tok-carol", "tok-victor"

RULES_V1 = b"""version: 1
rules:
  - name: login
    match: {methods: [POST], path: /login}
    limit: 5/minute
  - name: search
    match: {path: "/search/**"}
    limit: 10/second
  - name: search-canary
    match: {path: "/search/**"}
    identity: user
    limit: 2/second
    mode: shadow
"""

RULES_V2 = RULES_V1.replace(b"limit: 5/minute", b"limit: 3/minute").replace(
    b"limit: 10/second", b"limit: 20/second"
)


def token_table() -> TokenTable:
    return TokenTable({token_digest(t): Principal(*who) for t, who in PEOPLE.items()})


def principal(token: str) -> Principal:
    return Principal(*PEOPLE[token])


class Api:
    """Drives an ASGI app through httpx.ASGITransport on a private event loop."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        transport = httpx.ASGITransport(app=app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://control.test")

    def request(
        self, method: str, path: str, token: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        call = self.client.request(method, path, headers=headers, **kwargs)
        return self.loop.run_until_complete(call)

    def get(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, token, **kwargs)

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, token, **kwargs)

    def close(self) -> None:
        self.loop.run_until_complete(self.client.aclose())
        self.loop.close()
        self.app.state.service.db.close()
