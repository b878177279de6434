"""``flask ratemw check`` and ``flask ratemw explain``: the ``ratemw`` commands, for this app."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app
from flask.cli import with_appcontext
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from ratemw import RuleSet
from ratemw.cli import explain_ruleset, main
from ratemw.errors import ConfigError
from ratemw.rules import merge_rules

__all__ = ["ratemw_cli"]


def _rules_file() -> str:
    rules = current_app.extensions["ratemw"].rules
    if not isinstance(rules, (str, os.PathLike)) or "://" in os.fspath(rules):
        # Rules from Consul or Redis were validated when published (ratemw publish).
        raise click.UsageError("RATEMW_RULES is not a file: pass one")
    return os.fspath(rules)


def _app_rules() -> RuleSet:
    """The rules this app decides with: RATEMW_RULES (as loaded) and the
    ``@ratemw.limit`` rules, merged as on the first request."""
    state = current_app.extensions["ratemw"]
    ruleset: RuleSet = state.limiter.snapshot.ruleset
    if state._prepared:  # a request came first: the limiter holds them already
        return ruleset
    return merge_rules(ruleset, state.decorator_rules())


def _endpoint(method: str, path: str) -> str | None:
    """The endpoint a request would reach (what ``@ratemw.limit`` rules match)."""
    adapter = current_app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method=method)
    except (HTTPException, RequestRedirect):
        return None
    return str(endpoint)


@click.group("ratemw")
def ratemw_cli() -> None:
    """Rate limiting rules (ratemw)."""


@ratemw_cli.command("check")
@click.argument("files", nargs=-1, type=click.Path())
@with_appcontext
def check(files: tuple[str, ...]) -> None:
    """Validate the rules file(s) (default: RATEMW_RULES, with the @ratemw.limit rules)."""
    code = main(["check", *(files or [_rules_file()])])
    if not files and code == 0:
        state = current_app.extensions["ratemw"]
        rules = state.decorator_rules()
        try:
            merge_rules(state.limiter.snapshot.ruleset, rules)
        except ConfigError as exc:
            click.echo(str(exc))
            code = 1
        else:
            click.echo(f"ok: {len(rules)} rule(s) from @ratemw.limit")
    raise SystemExit(code)


@ratemw_cli.command(
    "explain", context_settings={"ignore_unknown_options": True, "allow_extra_args": True}
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@with_appcontext
def explain(args: tuple[str, ...]) -> None:
    """Show which rules apply to a request: --method M --path P [...].

    The rules are the app's: RATEMW_RULES and the @ratemw.limit rules; without
    --route, the endpoint is the one the app's URL map gives the path.
    """
    try:
        ruleset = _app_rules()
    except ConfigError as exc:
        click.echo(str(exc))
        raise SystemExit(1) from None
    raise SystemExit(explain_ruleset(ruleset, list(args), sys.stdout, route_of=_endpoint))
