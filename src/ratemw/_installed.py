"""One installed rule set: the compiled snapshot and everything derived from it.

The limiter swaps a single reference to an :class:`Installed` when the rules
change, so a request sees one whole rule set: its snapshot, identity resolver,
allow and deny lists, JWT verifier, and (with a store) the global faces of its
policies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ratemw._fast import fast_path
from ratemw.identity import AccessList, IdentityResolver
from ratemw.jwt import JWTConfigError, JWTVerifier
from ratemw.leasing import SharedBucket
from ratemw.slots import SharedSlots
from ratemw.store.breaker import CircuitBreaker

if TYPE_CHECKING:
    from ratemw.engine import SharedEngine
    from ratemw.local import KeyTable
    from ratemw.rules.compile import Snapshot
    from ratemw.rules.model import RuleSet
    from ratemw.types import Clock

__all__ = ["Installed", "store_breaker"]

log = logging.getLogger("ratemw")


class Installed:
    """Everything one rule set needs, swapped in as a single reference."""

    __slots__ = (
        "allow", "deny", "lists", "resolver", "rollout", "shared", "snapshot", "verifier",
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

    def share(self, engine: SharedEngine, tables: Callable[[str, Any], KeyTable[Any]]) -> None:
        """Turn every rate policy into the face of a global limit on ``engine``'s store."""
        for cr in self.snapshot.rules:
            if cr.slots is not None:
                cr.slot_policy = SharedSlots(cr, engine, cr.slots, engine.slot_ttl)
            for policy in cr.all_policies():
                bucket = SharedBucket(policy, engine)
                policy.shared = bucket
                policy.algorithm = bucket
                policy.table = tables(f"{policy.id}:shared", bucket)
                policy.states = policy.table.data
                policy.acquire = bucket.acquire
                policy.refund = bucket.refund
        self.shared = True

    def buckets(self) -> list[SharedBucket]:
        return [p.shared for cr in self.snapshot.rules for p in cr.all_policies() if p.shared]

    def bind(
        self, monotonic: Callable[[], float], wall: Callable[[], float], local_only: bool
    ) -> None:
        """(Re)build the fast-path closures, which capture locks and the clock."""
        for cr in self.snapshot.rules:
            for policy in cr.all_policies():
                policy.lock = policy.table.lock
                policy.fast = fast_path(policy, monotonic, wall, local_only)


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


def store_breaker() -> CircuitBreaker:
    # LEASES.md §9 backs off up to 8 s; leasing must resume within 1 s of the store
    # returning (docs/global.md), and one probe a second per node costs nothing.
    return CircuitBreaker(max_backoff_seconds=1.0)
