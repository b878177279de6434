"""The specialised decision function for the most common shape of request.

One unconditional rule with one rate, always enforced, untiered: the limiter
builds one closure per such policy, with everything it touches bound as a local,
so a decision costs a dict lookup, a lock and the bucket arithmetic. Rebuilt
whenever the rules or (after fork) the locks change.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from ratemw.decision import Decision

if TYPE_CHECKING:
    from ratemw.request import RequestInfo
    from ratemw.rules.compile import Policy

__all__ = ["FastPath", "fast_path"]

#: returns ``None`` when the request has no identity for the rule (the general
#: path then applies the fallback).
FastPath = Callable[["RequestInfo"], "Decision | None"]


def fast_path(
    policy: Policy, monotonic: Callable[[], float], wall: Callable[[], float]
) -> FastPath:
    """Build the fast decision function of ``policy``."""
    acquire = policy.lock.acquire
    release = policy.lock.release
    states = policy.states
    create = policy.table.get
    take = policy.take
    cost = policy.cost
    key_of = policy.key_of
    peer_key = policy.peer_key
    reject = policy.reject
    new = object.__new__

    def decide(info: RequestInfo) -> Decision | None:
        if peer_key:
            # Identity "ip" without trusted proxies: the peer, unless IPv6 or absent.
            k: Hashable | None = info.peer
            if not k or ":" in k:  # type: ignore[operator]
                k = key_of(info)
        else:
            k = key_of(info)
        if k is None:
            return None
        now = monotonic()
        acquire()
        try:
            state = states.get(k)
            if state is None:
                state = create(k, now)
            wait = take(state, now, cost)
        finally:
            release()
        # Filled slot by slot: a Python-level __init__ call would cost a third more.
        d: Decision = new(Decision)
        d._policy = policy
        d._state = state
        d._now = now
        d._wall = wall
        if wait:
            d.status = 429
            d._outcome = reject
            d._retry = wait
        else:
            d.status = 200
        return d

    return decide
