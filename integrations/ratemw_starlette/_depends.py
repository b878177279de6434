"""``RateLimit``: a per-route limit as a FastAPI dependency."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ratemw.errors import log_decide_failure
from ratemw.limiter import AsyncLimiter
from ratemw.rules import RuleSet, merge_rules
from ratemw_starlette._scope import SCOPE_KEY, request_info


class RateLimit:
    """A limit on the routes that depend on it, with the keys of a rules-file rule::

        @app.post("/login", dependencies=[Depends(RateLimit("5/minute", lease={"size": 1}))])

    Each route gets its own rule, named ``name`` (default: the route's name) and
    matched by route, merged (:func:`ratemw.rules.merge.merge_rules`) into the
    middleware's rules so their defaults, tiers and trusted proxies apply, and
    decided in a limiter of its own: the middleware has decided the file's rules.
    A rejection raises ``HTTPException(429)`` with ``Retry-After`` and the
    rate-limit headers. Rate limits only; concurrency belongs in the rules file.
    Raises :class:`ratemw.ConfigError` on the route's first request if invalid.
    """

    def __init__(
        self,
        limit: str | Sequence[str] | Mapping[str, str],
        *,
        identity: str | Sequence[str] = "ip",
        name: str | None = None,
        algorithm: str | None = None,
        burst: int | None = None,
        cost: int | None = None,
        lease: Mapping[str, Any] | None = None,
        mode: str | None = None,
    ) -> None:
        options = dict(algorithm=algorithm, burst=burst, cost=cost, lease=lease, mode=mode)
        self.rule: dict[str, Any] = {"identity": identity, "limit": limit}
        self.rule.update((k, v) for k, v in options.items() if v is not None)
        self.name = name
        # One limiter per middleware limiter (_alone: no middleware), a rule per route.
        self._limiters = weakref.WeakKeyDictionary[AsyncLimiter, AsyncLimiter]()
        self._alone: AsyncLimiter | None = None

    async def __call__(self, request: Request, response: Response) -> None:
        scope = request.scope
        route = scope.get("route")
        methods = ",".join(sorted(getattr(route, "methods", None) or ()))
        key = f"{methods} {scope.get('root_path', '')}{getattr(route, 'path', scope['path'])}"
        limiter = self._limiter_for(scope.get(SCOPE_KEY), key, getattr(route, "name", None))
        try:
            decision = await limiter.decide(request_info(scope, key))
            headers = decision.headers
        except Exception as exc:  # a limiter failure never becomes a 500
            log_decide_failure(exc)
            return
        if not decision.allowed:
            detail = str(decision.problem().get("detail", "Too Many Requests"))
            raise HTTPException(decision.status, detail, headers=dict(headers))
        for field, value in headers:
            response.headers.append(field, value)

    def _limiter_for(self, base: AsyncLimiter | None, key: str, route: str | None) -> AsyncLimiter:
        limiter = self._alone if base is None else self._limiters.get(base)
        if limiter is None:
            rules = base.snapshot.ruleset if base is not None else RuleSet()
            rules = dataclasses.replace(rules, rules=())  # its defaults and identity settings
            clock, tiers = getattr(base, "clock", None), getattr(base, "tier_resolver", None)
            limiter = AsyncLimiter(rules, clock=clock, tier_resolver=tiers)
            if base is None:
                self._alone = limiter
            else:
                self._limiters[base] = limiter
        current = limiter.snapshot.ruleset
        if all(r.match.route != key for r in current.rules):
            # No await since the lookup: concurrent first requests add the rule once.
            taken = {r.name for r in current.rules}
            name = stem = self.name or route or "route"
            n = 1
            while name in taken:  # the same instance on several routes: one rule each
                n += 1
                name = f"{stem}-{n}"
            rule = {"name": name, "match": {"route": key}, **self.rule}
            limiter.update_rules(merge_rules(current, [rule], source="<RateLimit>"))
        return limiter


# Older FastAPI (0.110 seen) reads a callable instance's annotations in an empty namespace, so
# with postponed annotations it took "request" for a query parameter (422): give it the
# classes themselves.
RateLimit.__call__.__annotations__.update(request=Request, response=Response)
