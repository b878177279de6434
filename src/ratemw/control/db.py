"""The control plane's database: connection, migrations and a thin SQL layer.

SQLite (the stdlib driver) is the embedded default; a ``postgresql://`` URL uses
psycopg 3 or psycopg2. Statements are written once with ``?`` placeholders and portable
types; :class:`Database` translates placeholders and the two column types that differ
(binary and float). Migrations are ordered steps recorded in ``schema_version``.

Control instances may share a database: every write transaction first takes its write
lock (SQLite ``BEGIN IMMEDIATE``; PostgreSQL the advisory lock :data:`WRITE_LOCK`), so
the read-modify-write of versions, rollouts and the audit chain's head is serial.
"""

from __future__ import annotations

import importlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from ratemw.control import ControlError
from ratemw.redact import redact, scrub

__all__ = ["MIGRATIONS", "WRITE_LOCK", "Database", "Migration", "open_database", "sqlite_path"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step; ``{blob}`` and ``{float}`` are replaced per dialect."""

    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "versions, approvals, deployments and the audit log",
        (
            """CREATE TABLE versions (
                id INTEGER PRIMARY KEY, digest TEXT NOT NULL, format TEXT NOT NULL,
                document {blob} NOT NULL, author TEXT NOT NULL, message TEXT NOT NULL,
                created_at TEXT NOT NULL, status TEXT NOT NULL
            )""",
            """CREATE TABLE approvals (
                version_id INTEGER NOT NULL REFERENCES versions (id),
                principal TEXT NOT NULL, comment TEXT NOT NULL, created_at TEXT NOT NULL,
                PRIMARY KEY (version_id, principal)
            )""",
            """CREATE TABLE deployments (
                id INTEGER PRIMARY KEY,
                version_id INTEGER NOT NULL REFERENCES versions (id),
                action TEXT NOT NULL, stage TEXT NOT NULL, percent {float} NOT NULL,
                published TEXT NOT NULL, actor TEXT NOT NULL, created_at TEXT NOT NULL
            )""",
            """CREATE TABLE audit_log (
                seq INTEGER PRIMARY KEY, at TEXT NOT NULL, principal TEXT NOT NULL,
                role TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
                outcome TEXT NOT NULL, detail TEXT NOT NULL, prev_hash TEXT NOT NULL,
                hash TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "index deployments by version",
        ("CREATE INDEX deployments_by_version ON deployments (version_id)",),
    ),
    Migration(
        3,
        "what-if previews of versions, per baseline and recording",
        (
            """CREATE TABLE previews (
                id INTEGER PRIMARY KEY,
                version_id INTEGER NOT NULL REFERENCES versions (id),
                baseline_id INTEGER NOT NULL REFERENCES versions (id),
                recording TEXT NOT NULL, ok INTEGER NOT NULL, report TEXT NOT NULL,
                plot TEXT NOT NULL, created_at TEXT NOT NULL, UNIQUE (version_id,
                baseline_id, recording)
            )""",
        ),
    ),
)

# The key of the PostgreSQL advisory lock every write transaction takes ("ratemwcp").
# One lock, not one per table: every action appends to the audit chain, whose head
# they would all serialise on anyway, and a single lock cannot deadlock.
WRITE_LOCK = int.from_bytes(b"ratemwcp", "big")

_TYPES = {
    "sqlite": {"blob": "BLOB", "float": "REAL"},
    "postgresql": {"blob": "BYTEA", "float": "DOUBLE PRECISION"},
}


class _Connection(Protocol):
    def cursor(self) -> Any: ...
    def commit(self) -> None: ...
    def rollback(self) -> None: ...
    def close(self) -> None: ...


def sqlite_path(url: str) -> str:
    """The file of a ``sqlite://`` URL, as SQLAlchemy reads it.

    ``sqlite:///rel/path.db`` is relative to the working directory,
    ``sqlite:////abs/path.db`` absolute, ``sqlite:///:memory:`` in memory.
    """
    if not url.startswith("sqlite:///"):
        raise ControlError(f"not a SQLite URL (want sqlite:///path.db): {redact(url)!r}")
    path = unquote(url[len("sqlite:///") :].split("?", 1)[0])
    if not path:
        raise ControlError(f"the SQLite URL names no file: {redact(url)!r}")
    return path


def _connect_postgresql(url: str) -> tuple[_Connection, type[BaseException]]:
    """A connection in READ COMMITTED, and the driver's base error."""
    for name in ("psycopg", "psycopg2"):
        try:
            driver = importlib.import_module(name)
        except ImportError:
            continue
        try:
            conn: _Connection = driver.connect(url)
            # A REPEATABLE READ default would take the snapshot before the write lock.
            level = "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"
            conn.cursor().execute(level)
            conn.commit()
        except Exception as exc:  # the driver's message may quote the URL or its password
            raise ControlError(
                f"cannot connect to {redact(url)}: {scrub(f'{type(exc).__name__}: {exc}', [url])}"
            ) from None
        return conn, driver.Error
    raise ControlError(
        "a postgresql:// database needs a PostgreSQL driver, and neither psycopg (3) nor "
        "psycopg2 is installed: run pip install 'psycopg[binary]'"
    )


class Database:
    """One connection, used under a lock; statements use ``?`` placeholders.

    Reads run outside transactions; :meth:`transaction` wraps writes and takes the
    database's write lock first, so writers in other processes (another control
    instance) wait, and a concurrent ``audit verify`` never sees half an action.
    ``errors`` is the driver's base exception.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        scheme = urlsplit(url).scheme.lower()
        self._lock = threading.RLock()
        self._in_transaction = False
        self._owner: int | None = None
        if scheme == "sqlite":
            path = sqlite_path(url)
            try:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            except sqlite3.Error as exc:
                raise ControlError(f"cannot open {path}: {exc}") from None
            conn.execute("PRAGMA busy_timeout = 5000")
            conn.execute("PRAGMA foreign_keys = ON")
            self.dialect = "sqlite"
            self._conn: _Connection = conn
            self._begin = "BEGIN IMMEDIATE"
            self.errors: tuple[type[BaseException], ...] = (sqlite3.Error,)
        elif scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
            self.dialect = "postgresql"
            self._plain = plain = url.replace(scheme + "://", "postgresql://", 1)
            self._conn, error = _connect_postgresql(plain)
            self._begin = f"SELECT pg_advisory_xact_lock({WRITE_LOCK})"
            self.errors = (error,)
        else:
            raise ControlError(
                f"unsupported database URL {redact(url)!r}: use sqlite:///path.db or "
                "postgresql://..."
            )

    @property
    def in_transaction(self) -> bool:
        """Whether this thread has a :meth:`transaction` block open."""
        return self._in_transaction and self._owner == threading.get_ident()

    def _sql(self, statement: str) -> str:
        if self.dialect == "postgresql":
            return statement.replace("?", "%s")
        return statement

    def _run(self, statement: str, params: Sequence[Any]) -> Any:
        cursor = self._conn.cursor()
        cursor.execute(self._sql(statement), tuple(params))
        return cursor

    def _reconnect_if_lost(self) -> bool:
        """Reconnect a PostgreSQL connection the server dropped (a restart, a failover,
        an idle timeout); True when it did. Only between transactions: nothing is lost."""
        if self.dialect != "postgresql" or not getattr(self._conn, "closed", False):
            return False
        self._conn, _ = _connect_postgresql(self._plain)  # ControlError (redacted) if down
        return True

    def _outside(self, attempt: Callable[[], _T]) -> _T:
        # A statement that opens a transaction (a read, or a write's lock) may be retried
        # once on a fresh connection: nothing ran on the dropped one that could be lost.
        self._reconnect_if_lost()
        try:
            return attempt()
        except self.errors:
            if not self._reconnect_if_lost():
                raise
        return attempt()

    def query(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a ``SELECT``."""
        with self._lock:
            ends = self.dialect == "postgresql" and not self._in_transaction

            def read() -> list[Any]:
                try:
                    return list(self._run(statement, params).fetchall())
                except BaseException:
                    if ends and not getattr(self._conn, "closed", False):
                        self._conn.rollback()  # else it stays in an aborted transaction
                    raise

            rows = self._outside(read) if ends else read()
            if ends:
                self._conn.commit()  # end the implicit read transaction
            return [tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in rows]

    def execute(self, statement: str, params: Sequence[Any] = ()) -> None:
        """Run one write; call it inside :meth:`transaction`."""
        with self._lock:
            self._run(statement, params)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Commit what the block wrote, or roll all of it back if it raises."""
        with self._lock:
            if self._in_transaction:
                raise RuntimeError("transactions do not nest")

            def begin() -> None:
                try:  # PostgreSQL: the lock comes first, so that in READ COMMITTED every
                    self._run(self._begin, ())  # later statement sees the last holder's writes
                except BaseException:
                    if self.dialect == "postgresql" and not getattr(self._conn, "closed", False):
                        self._conn.rollback()
                    raise

            self._outside(begin)
            self._in_transaction, self._owner = True, threading.get_ident()
            try:
                yield
            except BaseException:
                self._in_transaction = False
                self._end(commit=False)
                raise
            self._in_transaction = False
            self._end(commit=True)

    def _end(self, *, commit: bool) -> None:
        if self.dialect == "sqlite":
            self._run("COMMIT" if commit else "ROLLBACK", ())
        elif commit:
            self._conn.commit()
        else:
            self._conn.rollback()

    def schema_version(self) -> int:
        """The highest migration applied, 0 for a new database."""
        rows = self.query("SELECT MAX(version) FROM schema_version")
        return int(rows[0][0] or 0)

    def migrate(self, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
        """Apply the missing steps in order; returns the versions applied.

        Raises :class:`ControlError` when the database is newer than this code.
        """
        # Under the write lock: instances starting together on a new database take turns.
        with self.transaction():
            self.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
                "applied_at TEXT NOT NULL)"
            )
        current = self.schema_version()
        known = max((m.version for m in migrations), default=0)
        if current > known:
            raise ControlError(
                f"the database schema is at version {current}, newer than this ratemw "
                f"knows ({known}): upgrade ratemw"
            )
        applied: list[int] = []
        types = _TYPES[self.dialect]
        for step in sorted(migrations, key=lambda m: m.version):
            if step.version <= current:
                continue
            with self.transaction():
                if self.schema_version() >= step.version:
                    continue  # another instance applied it since we looked
                for statement in step.statements:
                    self.execute(statement.format(**types))
                self.execute(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    "VALUES (?, ?, ?)",
                    (step.version, step.description, datetime.now(timezone.utc).isoformat()),
                )
            applied.append(step.version)
        return applied

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_database(url: str) -> Database:
    """Connect to ``url`` and bring its schema up to date."""
    db = Database(url)
    try:
        db.migrate()
    except ControlError:
        db.close()
        raise
    except db.errors as exc:
        db.close()
        raise ControlError(
            f"cannot prepare the database {redact(url)}: {scrub(str(exc), [url])}"
        ) from None
    return db
