"""The specialised decision function for the most common shape of request.

One unconditional rule with one rate, always enforced, untiered: the limiter
builds one closure per such policy, with everything it touches bound as a local,
so a decision costs a dict lookup, a lock and the bucket arithmetic. Rebuilt
whenever the rules or (after fork) the locks change.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Hashable
from math import inf
from typing import TYPE_CHECKING, Any

from ratemw.algorithms.base import TIME_SLACK_SECONDS
from ratemw.algorithms.token_bucket import TOKEN_EPSILON, TokenBucket
from ratemw.decision import Decision, fast_decision_classes
from ratemw.decision.core import _NOTHING
from ratemw.errors import StoreClosed
from ratemw.limiter.fast_values import ratelimit_value
from ratemw.rules.compile import FastPath, no_decision

if TYPE_CHECKING:
    from ratemw.request import RequestInfo
    from ratemw.rules.compile import Policy

__all__ = ["NEAR_FRACTION", "FastPath", "Sampled", "fast_path"]

#: an admitted request is "near the limit" when at most this share of quota is left
NEAR_FRACTION = 0.2


_SLACK = TIME_SLACK_SECONDS
_INF = inf


def _free_count() -> int:
    """What ``sys.getrefcount`` reports, in the bucket fast path, of a decision that only
    the fast path itself holds (its spare cell and a local): -1 where refcounts cannot
    tell (not CPython, no GIL, or 3.14's borrowed stack references), so nothing is reused.
    """
    if (
        sys.implementation.name != "cpython"
        or sys.version_info >= (3, 14)
        or not getattr(sys, "_is_gil_enabled", lambda: True)()
    ):
        return -1
    spare = object()

    def probe() -> int:  # the shape of the fast path's check: a cell, a local, a call
        d = spare
        return sys.getrefcount(d)

    free = probe()
    return free if free == 3 else -1


#: see _free_count; checked once, at import
_FREE = _free_count()
_refcount = sys.getrefcount
_EPSILON = TOKEN_EPSILON
# The lock's methods through its type: a method descriptor call skips the generic call
# of a bound built-in (about 100 instructions a decision on CPython 3.11).
_Lock = type(threading.Lock())
_acquire, _release = _Lock.acquire, _Lock.release


def fast_path(
    policy: Policy, monotonic: Callable[[], float], wall: Callable[[], float], local_only: bool
) -> FastPath:
    """Build the fast decision function of ``policy``.

    ``local_only``: for a global limit, answer only what the lease decides and
    return ``None`` when the store must be asked (the async limiter awaits that).
    """
    if policy.shared is not None:
        return _shared_fast_path(policy, monotonic, wall, local_only)
    if type(policy.algorithm) is TokenBucket:
        return _bucket_fast_path(policy, monotonic, wall)
    return _general_fast_path(policy, monotonic, wall)


def _general_fast_path(
    policy: Policy, monotonic: Callable[[], float], wall: Callable[[], float]
) -> FastPath:
    """The fast path of a local policy of any algorithm, through its ``take``."""
    acquire = policy.lock.acquire
    release = policy.lock.release
    states = policy.states
    create = policy.table.get
    take = policy.take
    cost = policy.cost
    key_of = policy.key_of
    peer_key = policy.peer_key
    stats = policy.stats
    rops = policy.rule.ops
    ops = rops.owner
    counting = ops.config.metrics
    # A rejected identity is queued: it is the count of rejections, and it feeds top
    # offenders, the log and penalties (needless with metrics off and no penalty).
    track = counting or rops.penalty is not None
    # Near-limit: a token bucket's tokens are current right after take(); other
    # algorithms ask their own remaining().
    low = policy.near_low
    near = policy.near
    tokens = near is None
    algo = policy.algorithm
    Admitted, Rejected = fast_decision_classes(policy, wall, ratelimit_value(policy, algo))

    def decide(info: RequestInfo) -> Decision | None:
        now = monotonic()
        if peer_key:
            # Identity "ip" without trusted proxies: the peer, unless IPv6 or absent.
            k: Hashable | None = info.peer
            if not k or ":" in k:  # type: ignore[operator]
                k = key_of(info)
        else:
            k = key_of(info)
        if k is None:
            return None
        if rops.bans:
            left = ops.banned(rops, k)
            if left:
                stats.banned += counting
                return Decision(429, [], now, wall, rops.banned_outcome, left)
        acquire()
        try:
            state = states.get(k)
            if state is None:
                state = create(k, now)
            wait = take(state, now, cost)
            if counting and not wait:
                stats.allowed += 1
                if state.tokens <= low if tokens else near(state, now):  # type: ignore[misc]
                    stats.near += 1
        finally:
            release()
        if wait:
            if track:
                stats.queue.append(k)  # the rejection's count, and its identity (RuleStats)
            d = Rejected()
            d._retry = wait
        else:
            d = Admitted()
            d.status, d._outcome = 200, _NOTHING  # slots (fast_decision_classes)
        d._state = state
        d._now = now
        d._headers = None
        return d

    return decide


def _bucket_fast_path(
    policy: Policy, monotonic: Callable[[], float], wall: Callable[[], float]
) -> FastPath:
    """The same for a local token bucket, the default algorithm, with ``TokenBucket.take``
    written out inline: a method call, and the loads of the bucket's constants from it,
    cost a quarter of a decision. tests/test_fast_bucket.py holds the two equal."""
    lock: Any = policy.lock
    if type(lock) is not _Lock:  # a table's lock is a threading.Lock: never, in practice
        return _general_fast_path(policy, monotonic, wall)
    states = policy.states
    create = policy.table.get
    key_of = policy.key_of
    peer_key = policy.peer_key
    stats = policy.stats
    rops = policy.rule.ops
    ops = rops.owner
    counting = ops.config.metrics
    track = counting or rops.penalty is not None
    low = policy.near_low  # near-limit: at most this many tokens left after the take
    bucket: Any = policy.algorithm  # a TokenBucket (fast_path checked)
    rate, burst, inv_rate = bucket._rate, bucket._burst, bucket._inv_rate
    # Floats only: float-with-int arithmetic and comparisons take CPython's slow paths
    # (the int converts exactly, so the results are take()'s).
    cost = float(policy.cost)
    # take() returns the wait plus a hair of slack; here the slack is added when the
    # decision's retry_after is read (most decisions are never asked).
    Admitted, Rejected = fast_decision_classes(
        policy, wall, ratelimit_value(policy, bucket), retry_slack=_SLACK
    )

    lookup = states.get  # the table's dict is never replaced (KeyTable.clear empties it)
    # A decision its caller has dropped is reused for the next one: allocating and freeing
    # one costs about 800 instructions, a seventh of a decision. sys.getrefcount tells:
    # a count of _FREE means that only `spare` and the local `d` hold it, and whoever
    # loads it next (another thread included) holds it before it checks, so two threads
    # never both take it. Where refcounts cannot tell (_FREE is -1), none is reused.
    # (Constants are module globals, and what only rare branches use is reached through
    # one helper or the spare's class, not closure cells: every call's frame copies in
    # and clears each cell.)
    spare_admitted: Any = Admitted()
    spare_admitted.status, spare_admitted._outcome = 200, _NOTHING  # (fast_decision_classes)
    spare_rejected: Any = Rejected()
    ban = _ban_check(rops, stats, counting, wall)

    def decide(info: RequestInfo) -> Decision | None:
        nonlocal spare_admitted, spare_rejected
        now = monotonic()
        k: Hashable | None = info.peer if peer_key else None
        if not k or ":" in k:  # type: ignore[operator]
            k = key_of(info)
            if k is None:
                return None
        if rops.bans:
            banned = ban(k, now)
            if banned is not None:
                return banned
        _acquire(lock)
        try:
            state = lookup(k)
            if state is None:
                state = create(k, now)
            # TokenBucket.take, inline.
            if now < state.denied_until:
                # The slack is added when read (Rejected.retry_after).
                wait = state.denied_until - now
            else:
                tokens = state.tokens + (now - state.updated_at) * rate
                if tokens > burst:
                    tokens = burst
                if tokens + _EPSILON >= cost:
                    state.tokens = tokens = tokens - cost if tokens > cost else 0.0
                    state.updated_at = now
                    wait = 0.0
                    if counting:
                        stats.allowed += 1
                        if tokens <= low:
                            stats.near += 1
                elif cost > burst:
                    wait = _INF
                else:
                    wait = (cost - tokens) * inv_rate
                    # The deny cache ends at the exact time; the caller is told a hair later.
                    state.denied_until = now + wait
        finally:
            _release(lock)
        if wait > 0.0:  # a float comparison: `if wait:` would call float.__bool__
            if track:
                stats.queue.append(k)  # the rejection's count, and its identity (RuleStats)
            d: Decision = spare_rejected
            if _refcount(d) != _FREE:  # held elsewhere: a new one of its class, whose
                d = spare_rejected = type(d)()  # type: ignore[call-arg]  # __init__ is object's
            d._retry = wait
        else:
            d = spare_admitted
            if _refcount(d) != _FREE:
                d = spare_admitted = type(d)()  # type: ignore[call-arg]
                d.status, d._outcome = 200, _NOTHING
        d._state = state
        d._now = now
        d._headers = None
        return d

    return decide


def _ban_check(
    rops: Any, stats: Any, counting: bool, wall: Callable[[], float]
) -> Callable[[Hashable, float], Decision | None]:
    """The ban test of a fast path, for when its rule has bans: the 429 of a banned key."""
    ops = rops.owner

    def check(k: Hashable, now: float) -> Decision | None:
        left = ops.banned(rops, k)
        if not left:
            return None
        stats.banned += counting
        return Decision(429, [], now, wall, rops.banned_outcome, left)

    return check


def _shared_fast_path(
    policy: Policy, monotonic: Callable[[], float], wall: Callable[[], float], local_only: bool
) -> FastPath:
    """The same for a global limit: a live lease decides here, under one lock; an
    empty one, the deny cache and store calls go through the policy's bucket."""
    bucket = policy.shared
    slow = bucket.begin if local_only else bucket.acquire
    engine = bucket.engine
    acquire = policy.lock.acquire
    release = policy.lock.release
    states = policy.states
    cost = policy.cost
    key_of = policy.key_of
    peer_key = policy.peer_key
    reject = policy.reject
    stats = policy.stats
    rops = policy.rule.ops
    ops = rops.owner
    counting = ops.config.metrics
    track = counting or rops.penalty is not None
    # Near-limit of a global limit: judged on what Redis reported left at the last
    # lease call, so it is as fresh as the lease.
    low = policy.near_low
    Leased, _ = fast_decision_classes(policy, wall, ratelimit_value(policy, bucket))

    def decide(info: RequestInfo) -> Decision | None:
        now = monotonic()
        if peer_key:
            k: Hashable | None = info.peer
            if not k or ":" in k:  # type: ignore[operator]
                k = key_of(info)
        else:
            k = key_of(info)
        if k is None:
            return None
        if rops.bans:
            left = ops.banned(rops, k)
            if left:
                stats.banned += counting
                return Decision(429, [], now, wall, rops.banned_outcome, left)
        entry = None
        acquire()
        try:
            found = states.get(k)
            if found is not None and now >= found.denied_until and found.account.spend(cost, now):
                entry = found
                entry.admits += cost
                account = entry.account
                refresh = now >= account.refresh_at or account.tokens < account.last_grant * 0.1
                if counting:
                    stats.allowed += 1
                    if entry.remaining <= low:
                        stats.near += 1
        finally:
            release()
        if entry is not None:
            if refresh:
                engine.wants_refresh(bucket, k, entry)
            d = Leased()
            d.status, d._outcome = 200, _NOTHING
            d._state = entry
            d._now = now
            d._headers = None
            return d
        try:
            state, wait = slow(k, now)
        except StoreClosed as closed:
            if counting:
                stats.errors += 1
            return Decision(503, [], now, wall, reject, closed.retry_after)
        if wait is None:
            return None  # local_only: the store must be asked
        if wait:
            if track:
                stats.queue.append(k)  # the rejection's count, and its identity (RuleStats)
            return Decision(429, [(policy, state)], now, wall, reject, wait)
        if counting:
            stats.allowed += 1
            if state.remaining <= low:
                stats.near += 1
        return Decision(200, [(policy, state)], now, wall)

    return decide


class Sampled:
    """Stands in for a policy's fast path for one call, times it, and puts the fast path
    back. The operations loop installs one per policy and pass, so the fast path itself
    never tests whether to time a decision."""

    __slots__ = ("fast", "observe", "policy")

    def __init__(self, policy: Policy, fast: FastPath, observe: Callable[[float], None]) -> None:
        self.policy = policy
        self.fast = fast
        self.observe = observe

    def __call__(self, info: RequestInfo) -> Decision | None:
        # Compare-and-set (no call in between, so no other thread runs): a rebind that
        # replaced us meanwhile keeps its own closure.
        if self.policy.fast is self:
            self.policy.fast = self.fast
        started = time.perf_counter()
        decision = self.fast(info)
        if decision is not None:
            self.observe(time.perf_counter() - started)
        return decision

    @classmethod
    def arm(cls, policy: Policy, observe: Callable[[float], None]) -> None:
        """Time ``policy``'s next fast decision (unless it has none, or is armed)."""
        current = policy.fast
        if isinstance(current, Sampled) or current is no_decision:
            return
        armed = cls(policy, current, observe)
        if policy.fast is current:  # compare-and-set, as above
            policy.fast = armed
