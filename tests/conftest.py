from __future__ import annotations

import pytest

from ratemw.testing import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
