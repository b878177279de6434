"""The control plane's database for each test: SQLite and a real PostgreSQL.

Every test that asks for ``db_url`` (or ``new_db_url``) runs twice, once per dialect;
the PostgreSQL cluster (``tests.postgres_servers``) starts only when a test needs it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

DIALECTS = ("sqlite", "postgresql")


@pytest.fixture(params=DIALECTS)
def dialect(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def new_db_url(dialect: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[], str]:
    """Makes fresh, empty databases of the test's dialect; the first SQLite one is
    ``tmp_path / "control.db"``."""
    if dialect == "postgresql":
        factory: Callable[[], str] = request.getfixturevalue("postgres_databases")
        return factory
    names = itertools.chain(["control.db"], (f"control-{n}.db" for n in itertools.count(2)))
    return lambda: f"sqlite:///{tmp_path / next(names)}"


@pytest.fixture
def db_url(new_db_url: Callable[[], str]) -> str:
    """A fresh database of this test's own (``sqlite:///...`` or ``postgresql://...``)."""
    return new_db_url()
