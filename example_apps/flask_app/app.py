"""The Flask example: ``gunicorn example_apps.flask_app.app:app`` (from the repository root).

Rules: ``example_apps/ratelimits.yaml``. Try ``curl -i -X POST localhost:8000/login``
six times within a minute. With ``RATEMW_REDIS_URL`` set (e.g. ``redis://127.0.0.1:6379/0``)
the limits are global across workers (``gunicorn -w 4``); without it they are per process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, request

from ratemw_flask import RateMW, metrics_view

app = Flask(__name__)
app.config["RATEMW_RULES"] = Path(__file__).resolve().parent.parent / "ratelimits.yaml"
# Identity "user": in a real app, e.g. flask-login's ``current_user.get_id()``.
app.config["RATEMW_USER_GETTER"] = lambda: request.headers.get("X-Demo-User")
app.config["RATEMW_REDIS_URL"] = os.environ.get("RATEMW_REDIS_URL") or None
ratemw = RateMW()
#: How long a checkout holds its concurrency slot (bounded: at most 5 s).
CHECKOUT_HOLD_SECONDS = max(0.0, min(float(os.environ.get("CHECKOUT_HOLD_SECONDS", "0.5")), 5.0))


@app.post("/login")
def login() -> dict[str, object]:
    return {"status": "logged in", "pid": os.getpid()}


@app.get("/search/<q>")
def search(q: str) -> dict[str, object]:
    return {"query": q, "results": []}


@app.post("/checkout")
def checkout() -> Response:
    # A streamed body holds its "checkout" concurrency slot until the last chunk is sent.
    # Each line carries the wall-clock time it was written (run_demo.py checks overlaps).
    def steps() -> Iterator[str]:
        yield f"reserved {time.time():.6f}\n"
        time.sleep(CHECKOUT_HOLD_SECONDS)
        yield f"done {time.time():.6f}\n"

    return Response(steps(), mimetype="text/plain")


@app.get("/api/reports/<int:report_id>")
@ratemw.limit("60/minute", identity="ip")  # on top of the file's "reports" rule
def report(report_id: int) -> dict[str, int]:
    return {"id": report_id}


@app.get("/health")
@ratemw.exempt
def health() -> dict[str, object]:
    return {"status": "ok", "pid": os.getpid()}


app.add_url_rule("/metrics", view_func=metrics_view)  # Prometheus, every worker's counts
ratemw.init_app(app)
