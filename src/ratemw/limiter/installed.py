"""One installed rule set: the compiled snapshot and everything derived from it.

The limiter swaps a single reference to an :class:`Installed` when the rules
change, so a request sees one whole rule set: its snapshot, identity resolver,
allow and deny lists, JWT verifier, and (with a store) the global faces of its
policies.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ratemw.algorithms import build_algorithm
from ratemw.algorithms.token_bucket import TokenBucket
from ratemw.decision import Outcome
from ratemw.identity.access_list import AccessList
from ratemw.identity.jwt import JWTVerifier
from ratemw.identity.jwt_keys import JWTConfigError
from ratemw.identity.resolver import IdentityResolver
from ratemw.leases.bucket import SharedBucket
from ratemw.leases.slots import SharedSlots
from ratemw.limiter.fast import NEAR_FRACTION, fast_path
from ratemw.rules.compile import Policy, TableFactory, no_decision
from ratemw.rules.model import Rate

if TYPE_CHECKING:
    from ratemw.leases.engine import SharedEngine
    from ratemw.ops.measures import Brownout
    from ratemw.ops.runtime import Operations
    from ratemw.rules.compile import Snapshot
    from ratemw.rules.model import RuleSet
    from ratemw.types import Clock

__all__ = ["Installed"]

log = logging.getLogger("ratemw")


class Installed:
    """Everything one rule set needs, swapped in as a single reference."""

    __slots__ = (
        "allow", "brownout", "challenges", "deny", "lists", "resolver", "rollout", "shared",
        "snapshot", "verifier",
    )  # fmt: skip

    def __init__(self, snapshot: Snapshot, resolver: IdentityResolver, clock: Clock) -> None:
        rs = snapshot.ruleset
        self.snapshot = snapshot
        self.resolver = resolver
        self.allow = AccessList(rs.allow, resolver)
        self.deny = AccessList(rs.deny, resolver)
        self.lists = not (self.allow.empty and self.deny.empty)
        peer_key = not resolver.config.trusted_proxies
        for cr in snapshot.rules:
            cr.key_of = resolver.key_function(cr.identity)
            for policy in cr.all_policies():
                policy.key_of = cr.key_of
                policy.peer_key = peer_key and cr.identity == ("ip",)
        self.rollout = snapshot.rollout_percent
        self.shared = False
        self.verifier = _verifier(rs, clock)
        self.challenges = any(cr.rule.action == "challenge" for cr in snapshot.rules)
        #: id(policy) -> its scaled twin, while a brownout covers it
        self.brownout: dict[int, Policy] | None = None

    def observe(self, ops: Operations) -> None:
        """Give every rule its operations state and every policy its counters."""
        for cr in self.snapshot.rules:
            cr.ops = ops.rule_ops(cr)
            cr.stats = ops.rule_stats(cr, None)
            for policy in cr.all_policies():
                policy.stats = ops.rule_stats(cr, policy.tier)
                policy.near_low = policy.limit * NEAR_FRACTION
                policy.near = _near_test(policy)

    def share(self, engine: SharedEngine, tables: TableFactory) -> None:
        """Turn every rate policy into the face of a global limit on ``engine``'s store."""
        for cr in self.snapshot.rules:
            if cr.slots is not None:
                cr.slot_policy = SharedSlots(cr, engine, cr.slots, engine.slot_ttl)
            for policy in cr.all_policies():
                _share(policy, engine, tables)
        self.shared = True

    def brown_out(
        self, brownout: Brownout | None, tables: TableFactory, engine: SharedEngine | None
    ) -> None:
        """Pair every policy the brownout covers with a twin at the scaled limit; a
        request must pass both (the twin's own state starts full at the lower burst,
        and the original keeps its state, so a brownout never grants a fresh burst)."""
        if brownout is None:
            self.brownout = None
            return
        twins: dict[int, Policy] = {}
        for cr in self.snapshot.rules:
            for policy in cr.all_policies():
                if brownout.covers(cr.name, policy.tier):
                    twins[id(policy)] = _scaled(policy, brownout.factor, tables, engine)
        self.brownout = twins

    def buckets(self) -> list[SharedBucket]:
        return [p.shared for cr in self.snapshot.rules for p in cr.all_policies() if p.shared]

    def bind(
        self, monotonic: Callable[[], float], wall: Callable[[], float], local_only: bool
    ) -> None:
        """(Re)build the fast-path closures, which capture locks and the clock."""
        browned = self.brownout or {}
        for cr in self.snapshot.rules:
            # A challenge rule checks for a pass before it rejects: the general path.
            general = cr.rule.action == "challenge"
            for policy in cr.all_policies():
                policy.lock = policy.table.lock
                if general or id(policy) in browned:
                    policy.fast = no_decision
                else:
                    policy.fast = fast_path(policy, monotonic, wall, local_only)
            for twin in (browned.get(id(p)) for p in cr.all_policies()):
                if twin is not None:
                    twin.lock = twin.table.lock


def _share(policy: Policy, engine: SharedEngine, tables: TableFactory) -> None:
    bucket = SharedBucket(policy, engine)
    policy.shared = bucket
    policy.algorithm = bucket
    policy.table = tables(f"{policy.id}:shared", bucket)
    policy.states = policy.table.data
    policy.acquire = bucket.acquire
    policy.refund = bucket.refund


def _scaled(
    policy: Policy, factor: float, tables: TableFactory, engine: SharedEngine | None
) -> Policy:
    rule = policy.rule.rule
    rate = policy.rate
    count = max(1, math.floor(rate.count * factor))
    burst = None if rule.burst is None else max(rule.cost, math.floor(rule.burst * factor))
    scaled = Rate(count, rate.period_seconds, f"{count}/{rate.period_seconds:g}s")
    algo = build_algorithm(rule.algorithm, count, rate.period_seconds, burst)
    tag = f"bo{factor:g}"
    twin = Policy(
        policy.rule, policy.name, scaled, algo, tables(f"{policy.id}:{tag}", algo),
        f"{policy.id}:{tag}", f"{policy.store_id}|{tag}", policy.tier,
    )  # fmt: skip
    twin.key_of = policy.key_of
    twin.stats = policy.stats
    twin.reject = Outcome(policy.reject.violated, (), None, "brownout")
    if engine is not None:
        _share(twin, engine, tables)
    return twin


def _near_test(policy: Policy) -> Callable[[Any, float], bool] | None:
    """``None`` for a local token bucket, whose tokens the caller compares inline with
    ``policy.near_low`` (a call per decision would cost more than the comparison)."""
    low = policy.near_low
    if policy.shared is not None:

        def leased(state: Any, now: float) -> bool:  # what Redis reported at the last call
            left: float = state.remaining
            return left <= low

        return leased
    if isinstance(policy.algorithm, TokenBucket):
        return None
    remaining = policy.algorithm.remaining

    def near(state: Any, now: float) -> bool:
        return remaining(state, now) <= low

    return near


def _verifier(ruleset: RuleSet, clock: Clock) -> JWTVerifier | None:
    config = ruleset.identity.jwt
    if config is None:
        return None
    try:
        return JWTVerifier(config, clock=clock)
    except JWTConfigError as exc:
        # Fail safe: without a key no token is trusted, so nobody reaches a paid tier.
        log.error("ratemw: JWT identities disabled: %s", exc)
        return None
