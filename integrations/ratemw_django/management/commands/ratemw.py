"""``manage.py ratemw check`` and ``manage.py ratemw explain --method M --path P [...]``.

Both read the rules the middleware decides with: ``RATEMW["RULES"]`` and every
``@ratelimit`` rule (the URLconf is imported, so the decorators have run). ``explain``
takes the options of ``ratemw explain`` and, without ``--route``, resolves the path
with the URLconf to the route a ``@ratelimit`` rule or a URL name would match.
"""

from __future__ import annotations

import argparse
import io
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import Resolver404, resolve

from ratemw import RuleSet
from ratemw.cli import explain_ruleset
from ratemw_django.checks import load_rules
from ratemw_django.decorators import registered_rules, view_path


def _route_of(ruleset: RuleSet) -> Any:
    routes = {r.match.route for r in ruleset.rules if r.match.route is not None}

    def route(method: str, path: str) -> str | None:
        try:
            match = resolve(path)
        except Resolver404:
            return None
        names = (view_path(match.func), match.view_name, match.url_name)
        return next((n for n in names if n in routes), None)

    return route


class Command(BaseCommand):  # type: ignore[misc]  # Django has no type hints
    help = "Check the ratemw rules (with @ratelimit), or explain which apply to a request."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=("check", "explain"))
        parser.add_argument(
            "args", nargs=argparse.REMAINDER, help="explain: --method M --path P [...]"
        )

    def handle(self, *args: str, **options: Any) -> None:
        ruleset, errors = load_rules()
        if ruleset is None:
            for error in errors:
                self.stderr.write(f"{error.msg} ({error.hint})" if error.hint else error.msg)
            raise CommandError("invalid ratemw rules (see manage.py check)", returncode=1)
        if options["action"] == "check":
            count = len(registered_rules())
            self.stdout.write(
                f"ok: {len(ruleset.rules)} rule(s) in {ruleset.source}, "
                f"{count} of them from @ratelimit"
            )
            return
        out = io.StringIO()
        code = explain_ruleset(ruleset, list(args), out, route_of=_route_of(ruleset))
        self.stdout.write(out.getvalue(), ending="")
        if code:
            raise CommandError("ratemw explain: see above", returncode=code)
