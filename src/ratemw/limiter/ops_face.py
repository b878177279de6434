"""The operations face of a limiter: metrics, top offenders, bans and brownout.

A mixin of ``_LimiterCore`` (``ratemw.limiter``): it reads the counters the decision
paths keep and drives :class:`ratemw.ops.runtime.Operations`; it decides nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ratemw.limiter.fast import Sampled
from ratemw.ops.measures import Ban, Brownout
from ratemw.ops.stats import VERDICTS, MetricsSnapshot

if TYPE_CHECKING:
    from ratemw.algorithms.tables import KeyTable
    from ratemw.limiter.installed import Installed
    from ratemw.ops.runtime import Operations
    from ratemw.types import Clock

__all__ = ["OperationsFace"]

_BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class OperationsFace:
    """What operators and exporters call on a limiter."""

    ops: Operations
    engine: Any
    _state: Installed
    _brownout: Brownout | None
    _tables: dict[str, KeyTable[Any]]
    _wall: Any
    clock: Clock

    if TYPE_CHECKING:  # provided by _LimiterCore

        def _install(self, state: Installed) -> None: ...

        def _prune(self, state: Installed) -> None: ...

    def metrics(self) -> MetricsSnapshot:
        """Every counter and gauge of this limiter now (exporters call this at scrape)."""
        decisions: dict[tuple[str, str, str, str, str], int] = {}
        near: dict[tuple[str, str, str], int] = {}
        registry = self.ops.stats
        for stats in registry.all():
            with registry.lock:  # the queues count rejections: never read one mid-drain
                values = [(v, m, getattr(stats, slot)) for v, m, slot in VERDICTS]
            rule, route, tier = stats.labels
            for verdict, mode, value in values:
                if value:
                    decisions[(rule, route, tier, verdict, mode)] = value
            if stats.near:
                near[stats.labels] = stats.near
        st = self._state
        keys: dict[tuple[str], int] = {}
        inflight: dict[tuple[str], int] = {}
        for cr in st.snapshot.rules:
            tables = [p.table for p in cr.all_policies()] or ([cr.slots] if cr.slots else [])
            keys[(cr.name,)] = sum(len(t) for t in tables)
            if cr.slots is not None:
                inflight[(cr.name,)] = sum(s.inflight for _, s in cr.slots.items())
        engine = self.engine
        breakers: dict[tuple[str], int] = {}
        store_errors = lease_calls = 0
        latency = None
        if engine is not None:
            lease_calls = engine.lease_calls
            store_errors = engine.store_errors
            latency = engine.latency.data()
            for node, breaker in getattr(engine.store, "breakers", {}).items():
                breakers[(node,)] = _BREAKER_STATES.get(breaker.state, 0)
            for slot, _ in list(engine.held.values()):
                name = slot.rule_name
                inflight[(name,)] = inflight.get((name,), 0) + 1
        ops = self.ops
        extra = {} if latency is None else {"store_latency": latency}
        return MetricsSnapshot(
            decisions=decisions,
            near_limit=near,
            decision_seconds=ops.stats.decision_seconds.data(),
            store_errors=store_errors,
            lease_calls=lease_calls,
            breaker_state=breakers,
            inflight=inflight,
            config_reloads={(k,): v for k, v in ops.stats.config_reloads.items()},
            keys=keys,
            spike_alerts={(k,): v for k, v in ops.spike_alerts.items()},
            bans={(k,): v for k, v in ops.bans_started.items()},
            banned=ops.tracked()["bans"],
            brownout_factor=self._brownout.factor if self._brownout else 1.0,
            **extra,
        )

    def _arm_samples(self) -> None:
        """Time the next fast decision of every policy (``ratemw_decision_seconds``)."""
        observe = self.ops.stats.decision_seconds.observe
        for cr in self._state.snapshot.rules:
            for policy in cr.all_policies():
                Sampled.arm(policy, observe)

    def top(
        self, rule: str | None = None, n: int | None = None
    ) -> dict[str, list[tuple[str, int]]]:
        """This process's top rejected identities per rule (hashed unless addresses)."""
        out = {}
        for name, rops in self.ops.rules.items():
            if rule is None or name == rule:
                ranked = [(who, count) for who, count, _ in rops.top.top(n)]
                if ranked:
                    out[name] = ranked
        return out

    def ban(self, rule: str, identity: Any, seconds: float, reason: str = "manual") -> Ban:
        """Ban ``identity`` (a key of ``rule``: an address, a user id...) for ``seconds``;
        with Redis every process honours it within one operations interval.

        For an ``identity: ip`` rule, any address or network of clients is taken and
        mapped as a request from it would be (an IPv6 address bans its prefix group, an
        IPv4-mapped one its IPv4 address); ``ValueError`` for one that cannot be a
        client's (unspecified, multicast, host bits set, ``/0``)."""
        return self.ops.ban(rule, identity, seconds, reason)

    def brownout(
        self,
        factor: float,
        seconds: float,
        *,
        tiers: tuple[str, ...] = (),
        rules: tuple[str, ...] = (),
    ) -> Brownout:
        """Scale the selected limits by ``factor`` in this process for ``seconds``; it
        wins over a fleet-wide brownout while it lasts (``ratemw brownout set`` sets one
        for every process through Redis)."""
        b = Brownout(factor, self._wall() + seconds, tuple(tiers), tuple(rules))
        self.ops.set_local_brownout(b)
        return b

    def clear_brownout(self) -> None:
        """End this process's own brownout now (a fleet-wide one stays: ``ratemw
        brownout clear``)."""
        self.ops.set_local_brownout(None)

    def _set_brownout(self, brownout: Brownout | None) -> None:
        self._brownout = brownout
        state = self._state
        self._install(state)
        self._prune(state)
