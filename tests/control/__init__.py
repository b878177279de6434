"""Helpers for the control-plane tests: tokens of four principals, a sync API client, and
raw access to a control database of either dialect (to tamper with it behind the service)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ratemw.control.auth import Principal, TokenTable, token_digest
from ratemw.control.db import Database, sqlite_path

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


def tamper(url: str, statement: str, *params: object) -> None:
    """Run one write on the database at ``url`` on a connection of its own, as an
    intruder with database access would (``?`` placeholders, either dialect)."""
    db = Database(url)
    try:
        with db.transaction():
            db.execute(statement, params)
    finally:
        db.close()


def tables(url: str) -> set[str]:
    """The names of the tables in the database at ``url``."""
    db = Database(url)
    try:
        if db.dialect == "sqlite":
            rows = db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
        else:
            rows = db.query(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            )
        return {str(row[0]) for row in rows}
    finally:
        db.close()


def database_text(url: str) -> str:
    """Everything the database at ``url`` holds, as text: the SQLite file's bytes
    (free pages too), or every row of every PostgreSQL table."""
    if url.startswith("sqlite:"):
        with open(sqlite_path(url), "rb") as f:
            return f.read().decode("latin-1")
    db = Database(url)
    try:
        return "\n".join(
            repr(row) for name in sorted(tables(url)) for row in db.query(f"SELECT * FROM {name}")
        )
    finally:
        db.close()
