"""A real PostgreSQL for the test run (a pytest plugin: ``pytest_plugins``).

One throwaway cluster per session: ``initdb`` into a temporary directory (trust
authentication, loopback only), ``pg_ctl start`` on a free port, stopped and removed at
the end. Each test that asks gets a database of its own (``CREATE DATABASE``), dropped
after it. The binaries come from PATH, else from Debian's ``/usr/lib/postgresql/*/bin``.
No fakes, and nothing is skipped: without them the fixtures fail with a clear message.

PostgreSQL refuses to run as root, so when the tests run as root the cluster's
processes run as ``nobody`` (the directory is handed to that user). Python's own
``subprocess`` switches the user, so neither ``runuser`` nor ``setpriv`` is needed.
"""

from __future__ import annotations

import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.processes import HOST, free_port

# psycopg is imported where a server is used, so loading this plugin needs no driver.

__all__ = ["PostgresCluster", "find_binaries"]

START_DEADLINE_SECONDS = 30.0  # generous: initdb and a first start on a loaded 2-core machine
STOP_DEADLINE_SECONDS = 30
_TMPFS, _TMPFS_ROOM_BYTES = "/dev/shm", 1 << 30  # a container's 64 MiB one is too small
_RUN_AS = "nobody"  # present on every Debian system; only used when running as root
_SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "  # throwaway: speed
    "-c max_connections=200 -c shared_buffers=16MB"
)


class NoPostgres(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def find_binaries() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: PATH first, then the newest
    ``/usr/lib/postgresql/<major>/bin``."""
    found = shutil.which("initdb"), shutil.which("pg_ctl")
    if found[0] and found[1]:
        initdb = Path(found[0]).resolve()
        if (initdb.parent / "pg_ctl").is_file():
            return initdb.parent
    installed = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").is_file()]
    if installed:
        return max(installed, key=lambda p: int(re.sub(r"\D", "", p.parent.name) or 0))
    raise NoPostgres(
        "PostgreSQL's initdb and pg_ctl are on neither PATH nor /usr/lib/postgresql/*/bin: "
        "install the server (Debian: apt-get install postgresql)"
    )


def _as_user() -> dict[str, Any]:
    """Popen arguments that drop root for ``nobody``; none for any other user."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(_RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


class PostgresCluster:
    """A running throwaway cluster; ``url`` is its maintenance database ``postgres``."""

    def __init__(self, directory: Path) -> None:
        self.bin = find_binaries()
        self.directory = directory
        self.data = directory / "data"
        self.log = directory / "server.log"
        self.port = 0
        self._names = itertools.count(1)
        self._user = _as_user()
        if self._user:
            os.chown(directory, self._user["user"], self._user["group"])
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")  # fmt: skip
        self._start()

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bin / tool), *args], cwd=self.directory, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=START_DEADLINE_SECONDS, **self._user,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr}")

    def _start(self) -> None:
        # A free port can be taken between the probe and the bind: try a few.
        for _ in range(3):
            self.port = free_port()
            options = f"-k {self.directory} -c listen_addresses={HOST} -p {self.port} {_SETTINGS}"
            self._run("pg_ctl", "start", "-W", "-D", str(self.data), "-l", str(self.log),
                      "-o", options)  # fmt: skip
            if self._wait_ready():
                return
        raise RuntimeError(f"PostgreSQL did not start: {self.server_log()}")

    def _wait_ready(self) -> bool:
        """Poll until the server takes a query; False if it exited (port taken)."""
        import psycopg

        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return True
            except psycopg.OperationalError:
                log = self.server_log()
                if "FATAL" in log and not self._running():
                    if "could not bind" not in log:
                        raise RuntimeError(f"PostgreSQL exited: {log}") from None
                    self.log.write_text("")
                    return False
                time.sleep(0.05)  # a poll interval, not synchronisation
        raise RuntimeError(
            f"PostgreSQL not ready in {START_DEADLINE_SECONDS} s: {self.server_log()}"
        )

    def _running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def server_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def url_of(self, database: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def create_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"ratemw_test_{next(self._names)}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            # With fsync off, copying the template's files beats WAL-logging them (15+).
            fast = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0{fast}")
        return self.url_of(name)

    def drop_database(self, url: str) -> None:
        """Drop a database made by :meth:`create_database`, ending its connections."""
        import psycopg

        name = url.rsplit("/", 1)[1]
        if not re.fullmatch(r"ratemw_test_\d+", name):
            return
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        if self._running():
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                      "-t", str(STOP_DEADLINE_SECONDS))  # fmt: skip


def _parent() -> str | None:
    """A roomy tmpfs if there is one: a database is created by copying files, and even
    with fsync off that waits on a busy disk (0.4 s against 0.02 s on tmpfs)."""
    try:
        roomy = shutil.disk_usage(_TMPFS).free > _TMPFS_ROOM_BYTES
    except OSError:
        return None
    return _TMPFS if roomy and os.access(_TMPFS, os.W_OK) else None


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One cluster for the whole run, started on first use."""
    # Not pytest's tmp tree: it is 0700, and the cluster may run as another user.
    directory = Path(tempfile.mkdtemp(prefix="ratemw-pg-", dir=_parent()))
    try:
        try:
            cluster = PostgresCluster(directory)
        except NoPostgres as exc:
            pytest.fail(str(exc), pytrace=False)
        try:
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def postgres_databases(postgres_cluster: PostgresCluster) -> Iterator[Callable[[], str]]:
    """A factory of fresh databases for this test, dropped after it."""
    made: list[str] = []

    def create() -> str:
        made.append(postgres_cluster.create_database())
        return made[-1]

    yield create
    for url in made:
        postgres_cluster.drop_database(url)


@pytest.fixture
def postgres_url(postgres_databases: Callable[[], str]) -> str:
    """The URL of a fresh database of this test's own."""
    return postgres_databases()
