"""Replaying a recording through a real :class:`~ratemw.Limiter` on a manual clock.

Identities come back as stand-ins: each recorded ``ip`` digest becomes an address of
its own (assigned in order of first appearance, so the same input gives the same
addresses), and each other digest is handed over as the value of its kind (user,
tenant, API key, header, claim). Buckets therefore split exactly as they did live.
"""

from __future__ import annotations

import dataclasses
import heapq
import ipaddress
from dataclasses import dataclass
from typing import Any

from ratemw.limiter.limiters import Limiter
from ratemw.replay.reader import Arrival, Recording
from ratemw.request import RequestInfo
from ratemw.rules.model import RuleSet

__all__ = ["Replayed", "replay"]

#: the stand-in addresses start here (10.0.0.0), one per recorded ip digest
_FIRST_ADDRESS = int(ipaddress.IPv4Address("10.0.0.0"))


@dataclass(frozen=True, slots=True)
class Replayed:
    """What the replayed limiter decided for one arrival (``None``: not replayed)."""

    status: int
    violated: tuple[str, ...]
    matched: tuple[str, ...]

    @property
    def allowed(self) -> bool:
        return self.status < 300


@dataclass(slots=True)
class Run:
    """One replay: an outcome per arrival (``None`` for arrivals a list decided live),
    and what could not be replayed exactly."""

    outcomes: list[Replayed | None]
    rules: tuple[str, ...]  # every rule of the replayed rule set, in file order
    identities: dict[str, tuple[str, ...]]  # rule -> the identity kinds it counts by
    tiered: frozenset[str]  # the rules whose limits depend on the tier
    unknown_finish: int = 0  # admitted here but rejected live: no duration known


class _StandIns:
    """Stand-in request values for recorded digests."""

    def __init__(self) -> None:
        self._addresses: dict[str, str] = {}

    def address(self, digest: str) -> str:
        hit = self._addresses.get(digest)
        if hit is None:
            n = _FIRST_ADDRESS + len(self._addresses)
            hit = self._addresses[digest] = str(ipaddress.IPv4Address(n % 2**32))
        return hit

    def info(self, a: Arrival) -> RequestInfo:
        fields: dict[str, Any] = {}
        headers: dict[str, str] = {}
        claims: dict[str, object] = {}
        for kind, digest in a.ids:
            if kind == "ip":
                fields["peer"] = self.address(digest)
            elif kind in ("user", "tenant", "api_key"):
                fields[kind] = digest
            elif kind.startswith("header:"):
                headers[kind[7:]] = digest
            elif kind.startswith("jwt:"):
                claims[kind[4:]] = digest
        return RequestInfo(
            method=a.method,
            path=a.path,
            host=a.host,
            headers=headers,
            tier=a.tier,
            route=a.route,
            claims=claims or None,
            **fields,
        )


def replayable(ruleset: RuleSet) -> RuleSet:
    """``ruleset`` without allow and deny lists: the recording hashes the addresses they
    name, and the arrivals a list decided live are left out of the replay anyway."""
    return dataclasses.replace(ruleset, allow=(), deny=())


class _Clock:
    """The replay's clock: set to each arrival's time (a ManualClock without its lock)."""

    __slots__ = ("now", "offset")

    def __init__(self, now: float, offset: float) -> None:
        self.now = now
        self.offset = offset

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now + self.offset


def stand_ins(recording: Recording) -> list[RequestInfo | None]:
    """The request each arrival is replayed as (``None``: decided by a list live); made
    once and shared by the baseline's and the candidate's replay."""
    made = _StandIns()
    memo: dict[tuple[Any, ...], RequestInfo] = {}
    out: list[RequestInfo | None] = []
    for a in recording.arrivals:
        if a.gated:
            out.append(None)
            continue
        key = (a.method, a.path, a.host, a.ids, a.tier, a.route)
        info = memo.get(key)
        if info is None:
            info = memo[key] = made.info(a)
            if len(memo) > 100_000:
                memo.clear()
        out.append(info)
    return out


def replay(
    recording: Recording, ruleset: RuleSet, infos: list[RequestInfo | None] | None = None
) -> Run:
    """Decide every arrival of ``recording`` with ``ruleset``, in recorded time order
    (``infos``: from :func:`stand_ins`, made here when not given)."""
    arrivals = recording.arrivals
    start = arrivals[0].t if arrivals else 0.0
    clock = _Clock(start, arrivals[0].wall - start if arrivals else 0.0)
    limiter = Limiter(
        replayable(ruleset),
        clock=clock,
        operations={"interval_seconds": 0, "metrics": False},
    )
    try:
        return _run(limiter, clock, arrivals, stand_ins(recording) if infos is None else infos)
    finally:
        limiter.close()


def _run(
    limiter: Limiter, clock: _Clock, arrivals: list[Arrival], infos: list[RequestInfo | None]
) -> Run:
    snapshot = limiter.snapshot
    decide = limiter.decide
    running: list[tuple[float, int, Any]] = []  # (finish, order, decision) holding slots
    outcomes: list[Replayed | None] = []
    append = outcomes.append
    unknown = 0
    matched: dict[int, tuple[str, ...]] = {}  # id(info) -> names: infos are shared objects
    # Outcomes repeat (a few statuses, rules and verdicts): one immutable object each.
    made: dict[tuple[int, tuple[str, ...], tuple[str, ...]], Replayed] = {}
    for n, (a, info) in enumerate(zip(arrivals, infos, strict=True)):
        t = a.t
        while running and running[0][0] <= t:
            heapq.heappop(running)[2].release()
        if info is None:
            append(None)
            continue
        if t > clock.now:
            clock.now = t
        d = decide(info)
        outcome = d.outcome
        if outcome.slots:
            if a.finish is None:
                unknown += 1  # rejected live, so it never ran: assume it ends at once
                d.release()
            else:
                heapq.heappush(running, (a.finish, n, d))
        names = matched.get(id(info))
        if names is None:
            names = matched[id(info)] = tuple(cr.name for cr in snapshot.match(info))
        key = (d.status, outcome.violated, names)
        replayed = made.get(key)
        if replayed is None:
            replayed = made[key] = Replayed(*key)
        append(replayed)
    names_all = tuple(cr.name for cr in snapshot.rules)
    kinds = {cr.name: cr.rule.identity for cr in snapshot.rules}
    tiered = frozenset(cr.name for cr in snapshot.rules if cr.rule.tiered)
    return Run(outcomes, names_all, kinds, tiered, unknown)
