"""The Flask example: ``gunicorn example_apps.flask_app.app:app`` (from the repository root).

Rules: ``example_apps/ratelimits.yaml``. Try ``curl -i -X POST localhost:8000/login``
six times within a minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask, Response, request

from ratemw_flask import RateMW

app = Flask(__name__)
app.config["RATEMW_RULES"] = Path(__file__).resolve().parent.parent / "ratelimits.yaml"
# Identity "user": in a real app, e.g. flask-login's ``current_user.get_id()``.
app.config["RATEMW_USER_GETTER"] = lambda: request.headers.get("X-Demo-User")
ratemw = RateMW()


@app.post("/login")
def login() -> dict[str, str]:
    return {"status": "logged in"}


@app.get("/search/<q>")
def search(q: str) -> dict[str, object]:
    return {"query": q, "results": []}


@app.post("/checkout")
def checkout() -> Response:
    # A streamed body holds its "checkout" concurrency slot until the last chunk is sent.
    def steps() -> Iterator[str]:
        for step in ("reserved\n", "charged\n", "done\n"):
            time.sleep(0.2)
            yield step

    return Response(steps(), mimetype="text/plain")


@app.get("/api/reports/<int:report_id>")
@ratemw.limit("60/minute", identity="ip")  # on top of the file's "reports" rule
def report(report_id: int) -> dict[str, int]:
    return {"id": report_id}


@app.get("/health")
@ratemw.exempt
def health() -> dict[str, str]:
    return {"status": "ok"}


ratemw.init_app(app)
