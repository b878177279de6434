from __future__ import annotations

import pytest
from flask import Flask

from ratemw_flask import RateMW
from tests.integrations.store_down import EXPECTED, RULES, dead_redis_url


@pytest.mark.parametrize("path", sorted(EXPECTED))
def test_flask_with_redis_down_never_answers_500(path: str) -> None:
    app = Flask(__name__)
    app.config.update(RATEMW_RULES=RULES, RATEMW_REDIS_URL=dead_redis_url())
    RateMW(app)
    app.add_url_rule(path, path, lambda: "ok")
    client = app.test_client()
    # buffered: the test client reads the body and closes it, as a server does
    assert [client.get(path, buffered=True).status_code for _ in range(5)] == EXPECTED[path]
    app.extensions["ratemw"].limiter.close()
