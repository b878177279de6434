"""The general decision path: several rules, conditions, tiers, shadow and rollout,
concurrency, bans, brownout twins and challenges.

``general_plan`` is a method of ``_LimiterCore`` (``ratemw.limiter``; see
:class:`PlanHost`) written as a generator, so the sync and async limiters drive one
implementation: it yields ``(policy, key, now)`` for each rate or slot to take and is
sent ``(state, wait)`` back (``StoreClosed`` is thrown in when the store is down and
the rule says ``closed``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Protocol

from ratemw.decision import Decision, Outcome
from ratemw.errors import StoreClosed
from ratemw.request import USER_UNRESOLVED, RequestInfo
from ratemw.rules.compile import Candidates, stable_bucket

if TYPE_CHECKING:
    from ratemw.limiter.installed import Installed
    from ratemw.ops.measures import Brownout
    from ratemw.ops.passes import Challenges
    from ratemw.ops.runtime import Operations
    from ratemw.rules.compile import CompiledRule, Snapshot

__all__ = ["ALLOWED", "Plan", "general_plan"]

#: yields (policy, key, now) acquisitions, is sent (state, wait), returns the Decision
Plan = Generator[tuple[Any, Any, float], tuple[Any, float], Decision]
#: no rule applied: nothing to render, nothing to release
ALLOWED = Decision(200)
#: one general-path decision in 64 is timed for ``ratemw_decision_seconds`` (a fast path
#: is timed once per operations pass by ``ratemw.limiter.fast.Sampled``)
SAMPLE_MASK = 63


class PlanHost(Protocol):
    """What the general plan needs of its limiter (``ratemw.limiter._LimiterCore``, which
    takes :func:`general_plan` as a method): typed here, so this module never imports
    the limiter that imports it."""

    _plans: int

    @property
    def _state(self) -> Installed: ...
    @property
    def _brownout(self) -> Brownout | None: ...
    @property
    def _gated(self) -> bool: ...
    @property
    def _challenge(self) -> Challenges: ...
    @property
    def ops(self) -> Operations: ...
    @property
    def _monotonic(self) -> Callable[[], float]: ...
    @property
    def _wall(self) -> Callable[[], float]: ...

    def _gate(self, st: Installed, info: RequestInfo) -> Decision | None: ...
    def _tier(self, info: RequestInfo, snapshot: Snapshot) -> str | None: ...
    def _key_for(self, st: Installed, rule: str, info: RequestInfo) -> Any: ...


def general_plan(self: PlanHost, hit: Candidates | None, info: RequestInfo) -> Plan:
    """Decide ``info`` against every rule of ``hit`` (see the module docstring)."""
    st = self._state
    if self._gated:
        if st.verifier is not None:
            info = st.verifier.enrich(info)  # verified claims: user, tenant, tier
        gated = self._gate(st, info)
        if gated is not None:
            return gated
    if st.challenges and info.path == self._challenge.path:
        return self._challenge.solve(info, lambda rule: self._key_for(st, rule, info),
                                     self.ops.digest)  # fmt: skip
    snapshot = st.snapshot
    rules, simple, _ = hit if hit is not None else snapshot.candidates(info.path)
    if not simple and rules:
        rules = snapshot.narrow(rules, info)
    if not rules:
        return ALLOWED
    counting = self.ops.config.metrics
    self._plans = sampled = self._plans + 1
    timed = counting and not sampled & SAMPLE_MASK
    started = time.perf_counter() if timed else 0.0
    now = self._monotonic()
    tier = self._tier(info, snapshot) if snapshot.needs_tier else None
    browned = st.brownout
    brownout_left = 0.0
    if browned:
        # Its end is exact here, not one operations pass late, and a 503 never asks a
        # client to come back after it (docs/operations.md, "Brownout").
        brownout = self._brownout
        brownout_left = brownout.until - self._wall() if brownout is not None else 0.0
        if brownout_left <= 0.0:
            browned = None
    results: list[tuple[Any, Any]] = []
    violated: list[tuple[Any, str, float]] | None = None
    extra: list[tuple[Any, Any]] | None = None  # granted by shadow policies
    closed_rule: tuple[str, float] | None = None
    shadow: list[str] | None = None
    slots: list[Any] | None = None
    actions: set[str] = set()
    challenged: tuple[str, Any] | None = None
    for cr in rules:
        key = cr.key_of(info)
        if key is None:
            if _skipped(cr, info):
                continue
            key = ("ip", st.resolver.client_ip(info))
        enforce = cr.always_enforce or (cr.enforce and stable_bucket(key) < st.rollout)
        if enforce and cr.ops.bans:
            left = self.ops.banned(cr.ops, key)
            if left:  # answered without touching the buckets
                violated = violated or []
                violated.append((None, cr.name, left))
                actions.add("ban")
                if counting:
                    pols = cr.policies_for(tier) if cr.concurrency is None else ()
                    (pols[0].stats if pols else cr.stats).banned += 1
                continue
        if cr.concurrency is not None:
            stats = cr.stats
            try:
                slot, wait = yield cr.slot_policy, key, now
            except StoreClosed as closed:
                closed_rule = (cr.name, closed.retry_after)
                stats.errors += counting
                continue
            if slot is not None:
                slots = slots or []
                slots.append(slot)
                if counting:
                    stats.allowed += enforce
                    stats.shadow_allowed += not enforce
            elif enforce:
                violated = violated or []
                violated.append((None, cr.name, wait))
                actions.add("reject")
                if counting or cr.ops.penalty is not None:
                    stats.queue.append(key)  # counts the rejection too
            else:
                stats.shadow_rejected += counting
                if shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
            continue
        policies = cr.policies or cr.policies_for(tier)
        if not policies:
            continue
        stats = policies[0].stats
        over: list[tuple[Any, str, float]] = []  # this rule's violations
        taken: list[tuple[Any, Any]] = []  # its policies' states, for the headers
        twins: list[tuple[Any, Any]] = []  # brownout twins that granted
        granted: list[tuple[Any, Any]] = []
        near = errored = False
        for policy in policies:
            try:
                state, wait = yield policy, key, now
            except StoreClosed as closed:
                # The store is down and the rule says "closed": 503, never 429 or 500.
                closed_rule = (cr.name, closed.retry_after)
                stats.errors += counting
                errored = True
                break
            taken.append((policy, state))
            if wait:
                over.append((policy, cr.name, wait))
                continue
            granted.append((policy, state))
            if counting and not near:
                test = policy.near
                near = state.tokens <= policy.near_low if test is None else test(state, now)
            twin = browned.get(id(policy)) if browned and enforce else None
            if twin is not None:
                t_state, t_wait = yield twin, key, now
                if t_wait:
                    over.append((twin, cr.name, t_wait))
                else:
                    twins.append((twin, t_state))
        if not enforce:
            extra = [*(extra or ()), *granted, *twins]
            if over:
                stats.shadow_rejected += counting
                if shadow is None or cr.name not in shadow:
                    shadow = [*(shadow or ()), cr.name]
            elif not errored:
                stats.shadow_allowed += counting
            continue
        results.extend(taken)
        if twins:
            extra = [*(extra or ()), *twins]
        if errored:
            continue
        limited = any(p.reject.action != "brownout" for p, _, _ in over)
        if limited and cr.rule.action == "challenge":
            if self._challenge.passed(info, cr.name, self.ops.digest(key)):
                # A solved challenge lets this identity through this rule's limits.
                over = [v for v in over if v[0].reject.action == "brownout"]
                limited = False
            else:
                challenged = challenged or (cr.name, key)
        if over:
            violated = [*(violated or ()), *over]
        if limited:
            actions.add(cr.rule.action)
            # The queues count the verdict too (RuleStats.rejected / .challenged).
            if counting or cr.ops.penalty is not None:
                if cr.rule.action == "challenge":
                    stats.challenges.append(key)
                else:
                    stats.queue.append(key)
        elif over:
            actions.add("brownout")
            stats.brownout += counting
        elif counting:
            stats.allowed += 1
            stats.near += near
    if timed:
        self.ops.stats.decision_seconds.observe(time.perf_counter() - started)
    shadowed = tuple(shadow or ())
    if not violated and closed_rule is None:
        if shadow is None and slots is None:
            return Decision(200, results, now, self._wall)
        return Decision(200, results, now, self._wall, Outcome((), shadowed, slots))
    # The request does not happen: whatever other rules granted goes back.
    failed = {id(p) for p, _, _ in violated or ()}
    for policy, state in results + (extra or []):
        if id(policy) not in failed:
            policy.refund(state, now)
    for slot in slots or ():
        slot.release()
    if not violated:
        assert closed_rule is not None
        name, retry = closed_rule
        return Decision(503, results, now, self._wall, Outcome((name,), shadowed), retry)
    names = tuple(dict.fromkeys(name for _, name, _ in violated))
    # One answer for several causes: a hard limit, then a challenge, a ban, a brownout.
    action = next(a for a in ("reject", "challenge", "ban", "brownout") if a in actions)
    if action == "brownout":
        # Every violation is a twin's: the brownout's end admits the request too.
        violated = [(p, n, min(w, brownout_left)) for p, n, w in violated]
    # Each refusing policy's wait, by name (a brownout twin has its original's): its
    # RateLimit t= is the Retry-After it alone would give.
    waits: dict[str, float] = {}
    for policy, _, w in violated:
        if policy is not None:
            waits[policy.name] = max(w, waits.get(policy.name, 0.0))
    wait = max(w for _, _, w in violated)
    if action == "brownout":
        outcome = Outcome(names, shadowed, None, action, None, waits)
        return Decision(503, results, now, self._wall, outcome, wait)
    respond = None
    if action == "challenge" and challenged is not None:
        name, key = challenged
        respond = self._challenge.page(name, self.ops.digest(key), wait, info)
    outcome = Outcome(names, shadowed, None, action, respond, waits)
    return Decision(429, results, now, self._wall, outcome, wait)


def _skipped(cr: CompiledRule, info: RequestInfo) -> bool:
    """Whether a rule without an identity for ``info`` is skipped (else the client
    address stands in): ``on_identity_error`` when the adapter's user getter raised,
    ``on_missing_identity`` when the request simply has none."""
    if info.user is USER_UNRESOLVED and "user" in cr.identity:
        return cr.rule.on_identity_error == "skip"
    return cr.skip_missing
