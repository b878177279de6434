from __future__ import annotations

import pytest

from ratemw.testing import ManualClock

# Real redis-server processes and a real cluster, started on loopback ports.
pytest_plugins = ["tests.redis_servers"]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
