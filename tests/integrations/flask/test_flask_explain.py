"""``flask ratemw explain`` shows the ``@ratemw.limit`` rules, as ``check`` counts them
(issue #16, bug 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from ratemw.testing import ManualClock
from ratemw_flask import RateMW


def make_app(clock: ManualClock, rules: Any) -> Flask:
    app = Flask(__name__)
    app.config["RATEMW_RULES"] = rules
    ratemw = RateMW(clock=clock)

    @app.post("/login")
    @ratemw.limit("5/minute", identity="ip", lease={"size": 1})
    def login() -> str:
        return "welcome"

    @app.get("/reports/<int:n>")
    @ratemw.limit("60/minute")
    def report(n: int) -> str:
        return str(n)

    ratemw.init_app(app)
    return app


#: the name of a @ratemw.limit rule: the view's module and qualified name
VIEWS = f"{__name__}.make_app.<locals>"
FILE = "version: 1\nrules:\n  - {name: api, match: {path: /reports/*}, limit: 100/hour}\n"


def test_explain_shows_decorator_rules_by_endpoint(clock: ManualClock, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(FILE)
    runner = make_app(clock, rules).test_cli_runner()
    login = runner.invoke(args=["ratemw", "explain", "--method", "POST", "--path", "/login"])
    assert login.exit_code == 0, login.output
    assert f"1. {VIEWS}.login: 5/minute token_bucket" in login.output
    report = runner.invoke(args=["ratemw", "explain", "--path", "/reports/7"])
    assert report.exit_code == 0, report.output
    # the file's rule and the view's, in order
    assert "1. api: 100/hour" in report.output
    assert f"2. {VIEWS}.report: 60/minute" in report.output
    assert f"- {VIEWS}.login: route report is not login" in report.output
    checked = runner.invoke(args=["ratemw", "check"])
    assert checked.exit_code == 0 and "ok: 2 rule(s) from @ratemw.limit" in checked.output


def test_explain_after_requests_and_with_rules_as_a_mapping(clock: ManualClock) -> None:
    app = make_app(clock, {"version": 1, "rules": []})
    assert app.test_client().post("/login").status_code == 200  # merges the decorator rules
    result = app.test_cli_runner().invoke(
        args=["ratemw", "explain", "--method", "POST", "--path", "/login"]
    )
    assert result.exit_code == 0, result.output
    assert f"1. {VIEWS}.login: 5/minute" in result.output


def test_explain_usage_error_exits_2(clock: ManualClock) -> None:
    app = make_app(clock, {"version": 1, "rules": []})
    result = app.test_cli_runner().invoke(args=["ratemw", "explain", "--method", "GET"])
    assert result.exit_code == 2
    assert "--path" in result.output
