"""``ratemw convert``: the migration guides' own "From ..." examples, converted, limit as
the originals do; rates, keys and what cannot be translated."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ratemw import Limiter, RequestInfo
from ratemw.cli import main
from ratemw.config.convert import MAX_SOURCE_BYTES, convert_django_rate, convert_source
from ratemw.rules.parse import parse_ruleset
from ratemw.testing import ManualClock
from tests.docs.examples import DOCS, extract


def _guide_source(page: str) -> str:
    """The first python block of a migration guide: the other library's example."""
    path = DOCS / "migrate" / page
    return extract(path.read_text(encoding="utf-8"), page)[0].code


@pytest.mark.parametrize(
    ("page", "route"),
    [("flask-limiter.md", None), ("slowapi.md", None), ("django-ratelimit.md", "app.login")],
)
def test_guide_examples_convert_to_rules_that_limit_the_same(page: str, route: str | None) -> None:
    conversion = convert_source(_guide_source(page), module="app")
    assert [f for f in conversion.findings if f.severity == "error"] == []
    ruleset, problems = parse_ruleset(conversion.yaml(), "converted.yaml")
    assert ruleset is not None and [p for p in problems if p.severity == "error"] == []
    limiter = Limiter(ruleset, clock=ManualClock())
    info = RequestInfo(method="POST", path="/login", peer="198.51.100.20", route=route)
    assert [limiter.decide(info).status for _ in range(6)] == [200] * 5 + [429]
    other = RequestInfo(method="POST", path="/login", peer="198.51.100.21", route=route)
    assert limiter.decide(other).allowed  # per client address, as get_remote_address / "ip"


def test_flask_limiter_defaults_strategy_and_route_converters() -> None:
    source = """
limiter = Limiter(get_remote_address, app=app, default_limits=["200 per day; 50/hour"],
                  application_limits=["1000/second"], strategy="moving-window")

@app.route("/users/<int:user_id>", methods=["GET", "PUT"])
@limiter.limit("10 per minute", cost=2)
def user(user_id): ...

@bp.get("/search")
@limiter.limit("5/second", override_defaults=False)
def search(): ...
"""
    doc = convert_source(source).document()
    assert doc["defaults"] == {"identity": "ip", "algorithm": "sliding_window"}
    rules = {r["name"]: r for r in doc["rules"]}
    assert rules["default"]["limit"] == ["200 per day", "50/hour"]
    assert rules["application"]["identity"] == "global"
    assert rules["user"]["match"] == {"path": "/users/{user_id}", "methods": ["GET", "PUT"]}
    assert rules["user"]["cost"] == 2 and rules["user"]["overrides"] == ["default"]
    assert "overrides" not in rules["search"]
    assert rules["search"]["match"] == {"path": "/search", "methods": ["GET"]}


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("5/m", "5/minute"), ("100/h", "100/hour"), ("10/5m", "10/5 minutes"), ("3/s", "3/second"),
     ("7/", "7/second"), ("1/d", "1/day"), ("2/1m", "2/minute")],
)  # fmt: skip
def test_django_rates(rate: str, expected: str) -> None:
    assert convert_django_rate(rate) == expected


@pytest.mark.parametrize("rate", ["5/x", "five/m", "0/m", "5/m; 6/h", "9" * 40 + "/m"])
def test_django_rates_refused(rate: str) -> None:
    with pytest.raises(ValueError):
        convert_django_rate(rate)


def test_django_keys_methods_groups_and_block() -> None:
    source = """
@ratelimit(key="user_or_ip", rate="10/m", method=ratelimit.UNSAFE, group="writes")
def edit(request): ...

@ratelimit(key="header:x-api-key", rate="100/h", block=False)
def api(request): ...

@ratelimit(key="post:username", rate="3/m", method="POST")
def login(request): ...

@ratelimit(key=lambda g, r: r.user.email, rate=rate_for)
def export(request): ...
"""
    conversion = convert_source(source, module="shop.views")
    rules = {r["name"]: r for r in conversion.document()["rules"]}
    assert rules["writes"]["identity"] == "user"
    assert rules["writes"]["match"] == {
        "route": "shop.views.edit", "methods": ["POST", "PUT", "PATCH", "DELETE"],
    }  # fmt: skip
    assert rules["api"]["identity"] == "header:x-api-key" and rules["api"]["mode"] == "shadow"
    assert rules["login"]["identity"] == "ip"  # the stand-in
    errors = {f.line for f in conversion.findings if f.severity == "error"}
    assert errors == {8, 11}  # post:username; the lambda key and the computed rate
    _, problems = parse_ruleset(conversion.yaml(), "x.yaml")
    assert [p for p in problems if p.severity == "error"] == []


def test_untranslatable_key_function_is_an_error_with_its_line() -> None:
    conversion = convert_source(
        "limiter = Limiter(key_func=lambda: current_user.id)\n", module="app"
    )
    (finding,) = conversion.findings
    assert (finding.line, finding.severity) == (1, "error")
    assert "lambda: current_user.id" in finding.message


def test_cli_writes_a_valid_file_and_exits_by_severity(tmp_path: Path) -> None:
    good = tmp_path / "app.py"
    good.write_text(_guide_source("flask-limiter.md"), encoding="utf-8")
    out = io.StringIO()
    target = tmp_path / "ratelimits.yaml"
    assert main(["convert", str(good), "-o", str(target)], out=out) == 0
    assert "wrote 2 rule(s)" in out.getvalue()
    check = io.StringIO()
    assert main(["check", str(target)], out=check) == 0, check.getvalue()

    bad = tmp_path / "views.py"
    bad.write_text('@ratelimit(key="get:q", rate="5/m")\ndef search(request): ...\n')
    out = io.StringIO()
    assert main(["convert", str(bad)], out=out) == 1
    assert f"# {bad}:1: error: key 'get:q' cannot be translated" in out.getvalue()


def test_cli_refuses_large_and_broken_sources(tmp_path: Path) -> None:
    big = tmp_path / "big.py"
    big.write_bytes(b"#" * (MAX_SOURCE_BYTES + 1))
    out = io.StringIO()
    assert main(["convert", str(big)], out=out) == 1
    assert "larger than" in out.getvalue()
    broken = tmp_path / "broken.py"
    broken.write_text("def (:\n")
    out = io.StringIO()
    assert main(["convert", str(broken)], out=out) == 1
    assert "cannot parse: SyntaxError" in out.getvalue()
    with pytest.raises(ValueError):
        convert_source("x" * (MAX_SOURCE_BYTES + 1))
