from __future__ import annotations

import pytest

from ratemw.testing import ManualClock

# Real redis-server processes and a real cluster, started on loopback ports.
pytest_plugins = ["tests.redis_servers", "tests.postgres_servers", "tests.etcd_servers"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def single_process_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    """``/metrics`` serves this process's limiters, not prometheus multiprocess files."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    monkeypatch.delenv("prometheus_multiproc_dir", raising=False)
