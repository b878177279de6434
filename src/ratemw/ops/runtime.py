"""``Operations``: the per-limiter loop behind bans, top offenders, spikes and logs.

The hot path only counts into :class:`~ratemw.ops.stats.RuleStats`, queues rejected
identities and reads ``RuleOps.bans``. Every ``interval_seconds`` a daemon thread
drains the queues into the top-offender sketches, the penalty counters and the
rejection log, checks for spikes, and (with Redis) merges top offenders and penalty
counts into it and reads back the fleet's bans and brownout.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Hashable
from functools import partial
from typing import TYPE_CHECKING, Any

from ratemw.decision import Outcome
from ratemw.errors import StoreError
from ratemw.ops.config import OpsConfig
from ratemw.ops.events import RejectionLog, announce
from ratemw.ops.export import WeakSource, process_exporter
from ratemw.ops.shared import Ban, Brownout, Layout
from ratemw.ops.spikes import SpikeDetector
from ratemw.ops.stats import RuleStats, StatsRegistry
from ratemw.ops.topk import SpaceSaving
from ratemw.store._keys import _hash_key, identity_digest

if TYPE_CHECKING:
    from ratemw.rules.compile import CompiledRule
    from ratemw.rules.model import Penalty

__all__ = ["Operations", "RuleOps"]

log = logging.getLogger("ratemw")
events = logging.getLogger("ratemw.events")
_MEMO_LIMIT = 50_000
_Pair = tuple[str, str]  # (rule, identity digest)


class RuleOps:
    """What operations keep per rule name, across reloads."""

    __slots__ = (
        "banned_outcome", "bans", "ip", "name", "owner", "penalty", "pending", "top",
    )  # fmt: skip

    def __init__(self, name: str, owner: Operations) -> None:
        self.name = name
        self.owner = owner
        self.banned_outcome = Outcome((name,), (), None, "ban")
        self.ip = False  # identity "ip": offenders are shown as addresses
        #: digest -> end of the ban (epoch s); read lock-free on the hot path, so it is
        #: only ever replaced whole, never mutated
        self.bans: dict[str, float] = {}
        self.penalty: Penalty | None = None
        self.pending = SpaceSaving(owner.config.top_k)  # this interval's, for Redis
        self.top = SpaceSaving(owner.config.top_k)  # since start, for this process's view


class Operations:
    """Operations state and loop of one limiter (see :class:`OpsConfig`)."""

    def __init__(
        self,
        config: OpsConfig,
        *,
        owner: Any,
        hash_key: bytes | str | None = None,
        redis_url: str | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.stats = StatsRegistry()
        self.layout = Layout(config.app)
        self.rules: dict[str, RuleOps] = {}
        self.spikes = SpikeDetector(config.spikes)
        self.spike_alerts: Counter[str] = Counter()
        self.bans_started: Counter[str] = Counter()
        self.brownout: Brownout | None = None  # in force: the local one, else the fleet's
        self._local_brownout: Brownout | None = None
        self._fleet_brownout: Brownout | None = None
        self._owner = weakref.ref(owner)
        self._wall = wall
        self._key = _hash_key(hash_key)
        self._memo: dict[Hashable, str] = {}
        self._redis_url = redis_url
        self._store: Any = None
        self._penalty: dict[str, dict[str, tuple[float, int]]] = {}  # local windows
        self._unsent: list[Ban] = []
        self.rejections = RejectionLog(config.log_every, config.log_per_second)
        self._lock = threading.Lock()  # one pass at a time
        self._bans_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._exporter: Any = None  # prometheus multiprocess mode: this worker's pusher
        self._unreachable = False  # Redis failed the last pass (logged once per outage)

    # -- wiring ----------------------------------------------------------------

    def rule_ops(self, cr: CompiledRule) -> RuleOps:
        found = self.rules.get(cr.name)
        if found is None:
            found = self.rules[cr.name] = RuleOps(cr.name, self)
        found.ip = cr.identity == ("ip",)
        found.penalty = cr.rule.penalty
        return found

    def rule_stats(self, cr: CompiledRule, tier: str | None) -> RuleStats:
        m = cr.rule.match
        route = m.route or m.path or "*"
        return self.stats.get(cr.name, route, tier or "*")

    def digest(self, key: Hashable) -> str:
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= _MEMO_LIMIT:
                self._memo.clear()
            found = self._memo[key] = identity_digest(key, self._key)
        return found

    def shown(self, rops: RuleOps, key: Hashable) -> str:
        """An identity as operators see it: the address for ``ip`` rules, else hashed."""
        if rops.ip and isinstance(key, str):
            return key
        return f"h:{self.digest(key)}"  # whole: `ratemw ban add --rule R h:...` takes it

    def banned(self, rops: RuleOps, key: Hashable) -> float:
        """Seconds left of ``key``'s ban from this rule (0.0 when not banned)."""
        until = rops.bans.get(self.digest(key))
        if until is None:
            return 0.0
        left = until - self._wall()
        return left if left > 0 else 0.0

    # -- bans ------------------------------------------------------------------

    def ban(self, rule: str, identity: Hashable, seconds: float, reason: str = "manual") -> Ban:
        """Ban ``identity`` (a rule key, as ``key_of`` returns it) from ``rule``.

        Raises ``KeyError`` for a rule this limiter has never had.
        """
        rops = self.rules.get(rule)
        if rops is None:
            raise KeyError(f"no rule named {rule!r}")
        return self._ban(rops, self.digest(identity), self.shown(rops, identity), seconds, reason)

    def _ban(self, rops: RuleOps, digest: str, shown: str, seconds: float, reason: str) -> Ban:
        ban = Ban(rops.name, digest, shown, self._wall() + seconds, reason)
        rops.bans = {**rops.bans, digest: ban.until}
        self.bans_started[rops.name] += 1
        with self._bans_lock:
            self._unsent.append(ban)
        events.warning(
            "ratemw banned rule=%s identity=%s seconds=%.0f reason=%s",
            rops.name, shown, seconds, reason,
            extra={"ratemw": {"event": "ratemw.ban", "rule": rops.name, "identity": shown,
                              "seconds": seconds, "reason": reason}},
        )  # fmt: skip
        return ban

    def lift(self, rule: str, digest: str) -> None:
        rops = self.rules.get(rule)
        if rops is not None and digest in rops.bans:
            rops.bans = {d: u for d, u in rops.bans.items() if d != digest}

    # -- the loop --------------------------------------------------------------

    def start(self) -> None:
        if self._pid == os.getpid() or self.config.interval_seconds <= 0:
            return  # running already, or no loop wanted: the owner calls tick() itself
        if self._pid:  # a forked child: a lock held at fork time would stay held here
            self.stats.renew_locks()
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._bans_lock = threading.Lock()
        self._store = None  # a forked child opens its own connection
        self._exporter = None
        self._thread = threading.Thread(target=self._run, name="ratemw-ops", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        if self.config.metrics and self._exporter is not False:
            with self._lock:  # the counts of the last interval, or a recycled worker loses them
                self._export()
        if self._store is not None:
            self._store.close()

    def _run(self) -> None:
        stop, pid = self._stop, self._pid
        while not stop.wait(self.config.interval_seconds):
            if os.getpid() != pid or self._owner() is None:
                return
            try:
                self.tick()
            except Exception:  # the loop must outlive any bug in one pass
                log.exception("ratemw operations pass failed")

    def tick(self, now: float | None = None) -> None:
        """One pass (the loop runs it every interval; tests may call it directly)."""
        with self._lock:
            mono = time.monotonic() if now is None else now
            wall = self._wall()
            counts, shown = self._drain(wall)
            self._check_spikes(mono)
            owner = self._owner()
            if owner is not None and self.config.metrics:
                owner._arm_samples()
            client = self._client()
            if client is not None:
                try:
                    self._sync(client, counts, shown, wall)
                except Exception as exc:  # Redis down: carry on locally, loudly but once
                    if not self._unreachable:
                        log.warning(
                            "ratemw operations could not reach Redis (%s): bans, brownout "
                            "and top offenders are this process's own until it is back",
                            type(exc).__name__,
                        )
                    self._unreachable = True
                    client = None
                else:
                    if self._unreachable:
                        log.warning("ratemw operations reach Redis again")
                    self._unreachable = False
            if client is None:
                self._expire_local(wall)
                self._apply_brownout(wall)
            self._export()

    def _export(self) -> None:
        """Under gunicorn's multiprocess mode, push this worker's counters to the files
        prometheus_client sums (a custom collector would be ignored there)."""
        if not self.config.metrics or self._exporter is False:
            return
        try:
            if self._exporter is None:
                owner = self._owner()
                if owner is None:
                    return
                self._exporter = process_exporter()
                if self._exporter is None:
                    self._exporter = False  # not in multiprocess mode, or no prometheus-client
                    return
                self._exporter.add(WeakSource(owner))
            self._exporter.sync()
        except Exception:  # metrics must never stop bans, brownout or spikes
            log.exception("ratemw metrics export failed")

    def _client(self) -> Any:
        if self._redis_url is None:
            return None
        if self._store is None:
            from ratemw._installed import store_breaker
            from ratemw.store.redis import RedisStore

            self._store = RedisStore(self._redis_url, breaker=store_breaker)
        try:
            return self._store.redis()
        except StoreError:
            return None

    def _drain(self, wall: float) -> tuple[dict[_Pair, int], dict[_Pair, str]]:
        """Queues -> sketches, local penalties and the log; returns this pass's
        rejections per (rule, digest) of rules with a penalty, and how each is shown."""
        penalised: dict[_Pair, int] = {}
        shown_as: dict[_Pair, str] = {}
        for stats in self.stats.all():
            if not (stats.queue or stats.challenges):
                continue
            with self.stats.lock:  # so that a scrape never sees a list taken, not counted
                rejected, challenged = stats.take_queues()
            rule = stats.labels[0]
            rops = self.rules.get(rule)
            if rops is None:
                continue
            for items, verdict in ((rejected, "rejected"), (challenged, "challenged")):
                if not items:
                    continue
                if len(items) > self.config.queue_limit:
                    # A flood: the newest suffice for the sketch, penalties and the log.
                    items = items[-self.config.queue_limit :]
                for key, n in Counter(items).items():
                    shown = self.shown(rops, key)
                    rops.top.add(shown, n)
                    rops.pending.add(shown, n)
                    if rops.penalty is not None:
                        digest = self.digest(key)
                        penalised[(rule, digest)] = penalised.get((rule, digest), 0) + n
                        shown_as[(rule, digest)] = shown
                        self._count_locally(rops, digest, shown, n, wall)
                self.rejections.log(stats.labels, verdict, items, partial(self.shown, rops))
        return penalised, shown_as

    def _count_locally(self, rops: RuleOps, digest: str, shown: str, n: int, wall: float) -> None:
        penalty = rops.penalty
        assert penalty is not None
        windows = self._penalty.setdefault(rops.name, {})
        start, count = windows.get(digest, (wall, 0))
        if wall - start >= penalty.after.period_seconds:
            start, count = wall, 0
        count += n
        windows[digest] = (start, count)
        if count >= penalty.after.count and digest not in rops.bans:
            windows.pop(digest, None)
            self._ban(rops, digest, shown, penalty.ban_seconds, f"penalty {penalty.after}")

    def _sync(
        self, client: Any, counts: dict[_Pair, int], shown: dict[_Pair, str], wall: float
    ) -> None:
        layout = self.layout
        if counts:
            windows = {
                rule: rops.penalty.after.period_seconds
                for rule, rops in self.rules.items()
                if rops.penalty is not None
            }
            totals = layout.add_rejections(client, counts, windows)
            for (rule, digest), total in totals.items():
                rops = self.rules[rule]
                assert rops.penalty is not None
                if total >= rops.penalty.after.count and digest not in rops.bans:
                    self._ban(rops, digest, shown[(rule, digest)], rops.penalty.ban_seconds,
                              f"penalty {rops.penalty.after} (fleet)")  # fmt: skip
        with self._bans_lock:
            unsent = list(self._unsent)
        if unsent:
            layout.add_bans(client, unsent)  # on failure they stay for the next pass
            with self._bans_lock:
                self._unsent = [b for b in self._unsent if b not in unsent]
        for rops in self.rules.values():
            deltas = rops.pending.drain()
            if deltas:
                layout.push_top(client, rops.name, deltas, wall)
        layout.expire_bans(client, wall)
        active = layout.active_bans(client, wall)
        pending = {(b.rule, b.digest): b.until for b in self._unsent}
        for name, rops in self.rules.items():
            fresh = dict(active.get(name, {}))
            for (rule, digest), until in pending.items():
                if rule == name:
                    fresh[digest] = until
            if fresh != rops.bans:
                rops.bans = fresh
        self._fleet_brownout = layout.brownout(client)
        self._apply_brownout(wall)

    def _expire_local(self, wall: float) -> None:
        with_ended = [r for r in self.rules.values() if any(u <= wall for u in r.bans.values())]
        for rops in with_ended:
            rops.bans = {d: u for d, u in rops.bans.items() if u > wall}
        if self._redis_url is None:
            self._unsent.clear()

    def set_local_brownout(self, brownout: Brownout | None) -> None:
        """This process's own brownout; while it lasts it wins over the fleet's."""
        with self._lock:
            self._local_brownout = brownout
            self._apply_brownout(self._wall())

    def _apply_brownout(self, wall: float) -> None:
        # Each ends by itself at its deadline, whether or not Redis is reachable.
        if self._local_brownout is not None and self._local_brownout.until <= wall:
            self._local_brownout = None
        if self._fleet_brownout is not None and self._fleet_brownout.until <= wall:
            self._fleet_brownout = None
        brownout = self._local_brownout or self._fleet_brownout
        if brownout != self.brownout:
            self.brownout = brownout
            owner = self._owner()
            if owner is not None:
                owner._set_brownout(brownout)

    # -- spikes and logs -------------------------------------------------------

    def _check_spikes(self, mono: float) -> None:
        totals: Counter[str] = Counter()
        for stats in self.stats.all():
            totals[stats.labels[0]] += stats.rejected + stats.challenged
        for rule, total in totals.items():
            alert = self.spikes.observe(rule, total, mono)
            if alert is not None:
                self.spike_alerts[alert.rule] += 1
                announce(alert, self.config)
