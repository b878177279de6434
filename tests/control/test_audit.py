"""The audit chain and the migrations, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ratemw.control import ControlError
from ratemw.control.audit import GENESIS, AuditLog, Verification, entry_hash, verify
from ratemw.control.db import MIGRATIONS, Database, Migration, open_database, sqlite_path
from tests.control import tables, tamper


def filled(url: str, count: int = 5) -> str:
    db = open_database(url)
    log = AuditLog(db, clock=iter(f"2030-01-01T00:00:{n:02d}" for n in range(99)).__next__)
    for n in range(count):
        log.append(
            principal="alice", role="editor", action="propose", target=f"version:{n}",
            outcome="ok", detail={"n": n, "note": "é"},
        )  # fmt: skip
    db.close()
    return url


def check(url: str) -> Verification:
    db = open_database(url)
    try:
        return verify(db)
    finally:
        db.close()


def test_entries_are_chained(db_url: str) -> None:
    url = filled(db_url)
    db = open_database(url)
    entries = AuditLog(db).entries()
    db.close()
    assert [e.seq for e in entries] == [1, 2, 3, 4, 5]
    assert entries[0].prev_hash == GENESIS
    for before, entry in itertools.pairwise(entries):
        assert entry.prev_hash == before.hash
    first = entries[0]
    assert first.hash == entry_hash(
        1, first.at, "alice", "editor", "propose", "version:0", "ok", first.detail, GENESIS
    )
    assert first.to_json()["detail"] == {"n": 0, "note": "é"}
    result = check(url)
    assert result.ok and result.entries == 5 and result.head == entries[-1].hash
    assert str(result).startswith("ok: 5 audit entries")


def test_an_empty_log_verifies(db_url: str) -> None:
    result = check(db_url)
    assert result.ok and result.entries == 0 and result.head == GENESIS


@pytest.mark.parametrize("column", ["principal", "outcome", "detail", "at", "target"])
def test_an_edited_entry_is_named(db_url: str, column: str) -> None:
    url = filled(db_url)
    tamper(url, f"UPDATE audit_log SET {column} = {column} || 'x' WHERE seq = 3")
    result = check(url)
    assert not result.ok and result.broken == 3 and "edited" in result.reason
    assert result.entries == 2
    assert str(result).startswith("broken: audit entry 3:")


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(db_url: str) -> None:
    url = filled(db_url)
    db = open_database(url)
    e = AuditLog(db).entries()[1]
    db.close()
    forged = entry_hash(e.seq, e.at, "mallory", e.role, e.action, e.target, e.outcome,
                        e.detail, e.prev_hash)  # fmt: skip
    tamper(url, "UPDATE audit_log SET principal = 'mallory', hash = ? WHERE seq = 2", forged)
    result = check(url)
    assert result.broken == 3 and "previous-entry hash" in result.reason


def test_a_deleted_entry_is_named(new_db_url: Callable[[], str]) -> None:
    url = filled(new_db_url())
    tamper(url, "DELETE FROM audit_log WHERE seq = 2")
    result = check(url)
    assert result.broken == 2 and "missing" in result.reason
    url = filled(new_db_url())
    tamper(url, "DELETE FROM audit_log WHERE seq = 1")
    assert check(url).broken == 1


def test_renumbering_after_a_delete_is_caught(db_url: str) -> None:
    url = filled(db_url)
    tamper(url, "DELETE FROM audit_log WHERE seq = 2")
    tamper(url, "UPDATE audit_log SET seq = seq - 1 WHERE seq > 2")
    result = check(url)
    assert result.broken == 2 and "previous-entry hash" in result.reason


def test_migrations_apply_once_in_order(db_url: str) -> None:
    db = Database(db_url)
    assert db.migrate() == [m.version for m in MIGRATIONS]
    assert db.schema_version() == MIGRATIONS[-1].version
    assert db.migrate() == []
    extra = Migration(99, "a later step", ("CREATE TABLE later (x INTEGER)",))
    assert db.migrate((*MIGRATIONS, extra)) == [99]
    db.close()
    with pytest.raises(ControlError, match="newer than this ratemw"):
        open_database(db_url)


def test_a_failed_migration_step_is_rolled_back(db_url: str) -> None:
    db = Database(db_url)
    broken = Migration(1, "half", ("CREATE TABLE a (x INTEGER)", "CREATE TABLE oops ("))
    with pytest.raises(db.errors):
        db.migrate((broken,))
    assert db.schema_version() == 0
    db.close()
    assert "a" not in tables(db_url) and "schema_version" in tables(db_url)


def test_database_urls(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///rel/x.db") == "rel/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    assert sqlite_path("sqlite:///:memory:") == ":memory:"
    with pytest.raises(ControlError, match="names no file"):
        sqlite_path("sqlite:///")
    with pytest.raises(ControlError, match="unsupported database URL"):
        Database("mysql://localhost/x")
    with pytest.raises(ControlError, match="cannot open"):
        Database(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")


def test_postgresql_without_a_driver_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes an import fail, even of a module loaded already.
    for name in ("psycopg", "psycopg2"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ControlError, match=r"psycopg.*psycopg2.*pip install"):
        Database("postgresql://control@127.0.0.1/ratemw")
