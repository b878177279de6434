"""A control instance survives PostgreSQL dropping its connection (a restart, a failover,
an idle timeout): the next read or write reconnects, once, and nothing is lost."""

from __future__ import annotations

import psycopg

from ratemw.control.db import open_database


def _drop_other_connections(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return len(rows)


def test_reads_and_writes_reconnect_after_the_server_drops_the_connection(
    postgres_url: str,
) -> None:
    db = open_database(postgres_url)
    try:
        before = db.schema_version()
        assert before > 0
        assert _drop_other_connections(postgres_url) == 1
        assert db.schema_version() == before  # a read: reconnected, then answered
        assert _drop_other_connections(postgres_url) == 1
        with db.transaction():  # a write: the lock is taken on a fresh connection
            db.execute(
                "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)",
                (before + 100, "probe", "now"),
            )
        assert db.schema_version() == before + 100
    finally:
        db.close()
