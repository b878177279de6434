"""``Operations``: the per-limiter loop behind bans, top offenders, spikes and logs.

The hot path only counts into :class:`~ratemw.ops.stats.RuleStats`, queues rejected
identities and reads ``RuleOps.bans``. Every ``interval_seconds`` a daemon thread
drains the queues into the top-offender sketches, the penalty counters and the
rejection log, checks for spikes, and (with Redis) makes at most one pipelined round
trip carrying what is due (``ops/fleet.py``): penalty counts, new bans, top offenders
every few seconds, the version of bans and brownout when no heartbeat brought it; the
fleet's bans and brownout are fetched only when that version changed.

Per-identity state is bounded (``OpsConfig.max_identities``, default the limiter's
``max_keys``). The pass's parts: the queues' drain and the penalty box
(:mod:`ratemw.ops.drain`), this limiter's bans (:mod:`ratemw.ops.local_bans`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

from ratemw.errors import StoreError
from ratemw.ops import bans, otel
from ratemw.ops.config import OpsConfig
from ratemw.ops.drain import Drain, Pair
from ratemw.ops.events import RejectionLog, announce
from ratemw.ops.export import WeakSource, process_exporter
from ratemw.ops.fleet import FleetSync
from ratemw.ops.fleet_counts import FleetCounts
from ratemw.ops.local_bans import LocalBans
from ratemw.ops.measures import Ban, Brownout
from ratemw.ops.rule_ops import RuleOps
from ratemw.ops.shared import Layout
from ratemw.ops.spikes import SpikeDetector
from ratemw.ops.stats import RuleStats, StatsRegistry
from ratemw.store._keys import _hash_key, identity_digest

if TYPE_CHECKING:
    from ratemw.identity.resolver import IdentityResolver
    from ratemw.rules.compile import CompiledRule

__all__ = ["Operations", "RuleOps"]

log = logging.getLogger("ratemw")
_MEMO_LIMIT = 50_000
_DEFAULT_MAX_IDENTITIES = 100_000  # ratemw.algorithms.tables.DEFAULT_MAX_KEYS


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
        self.fleet = FleetSync(self.layout, config.poll_every, config.push_every)
        self.rules: dict[str, RuleOps] = {}
        self.spikes = SpikeDetector(config.spikes)
        self.spike_alerts: Counter[str] = Counter()
        self.fleet.counts = FleetCounts(self.stats, self.spike_alerts)  # the console's charts
        self.brownout: Brownout | None = None  # in force: the local one, else the fleet's
        self._local_brownout: Brownout | None = None
        self._fleet_brownout: Brownout | None = None
        self._owner = weakref.ref(owner)
        self._wall = wall
        self._key = _hash_key(hash_key)
        self._memo: dict[Hashable, str] = {}
        self._redis_url = redis_url
        limit = config.max_identities or getattr(owner, "max_keys", None)
        self.max_identities: int = int(limit or _DEFAULT_MAX_IDENTITIES)
        self.local_bans = LocalBans(
            self.rules, self.max_identities, key=self._key, digest=self.digest,
            shown=self.shown, resolver=self._resolver, wall=wall,
        )  # fmt: skip
        self.bans_started = self.local_bans.started
        self.rejections = RejectionLog(config.log_every, config.log_per_second)
        self._drain = Drain(
            config, self.stats, self.rules, self.local_bans, self.rejections,
            digest=self.digest, shown=self.shown,
        )  # fmt: skip
        self._lock = threading.Lock()  # one pass at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._exporter: Any = None  # prometheus multiprocess mode: this worker's pusher
        self._unreachable = False  # Redis failed the last pass (logged once per outage)
        if redis_url is not None:  # the first heartbeat already reads the version
            self.fleet.link(getattr(owner, "engine", None), redis_url)

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
        return self.local_bans.banned(rops, key)

    def ban(self, rule: str, identity: Hashable, seconds: float, reason: str = "manual") -> Ban:
        """Ban ``identity`` (a rule key, as ``key_of`` returns it) from ``rule``.

        For an ``identity: ip`` rule, ``identity`` may be any address or network of
        clients (IPv6 addresses are mapped to the rule's prefix group, as requests are).
        Raises ``KeyError`` for a rule this limiter has never had, ``ValueError`` for an
        address that cannot be a client's (:func:`ratemw.addresses.ban_network`).
        """
        return self.local_bans.ban(rule, identity, seconds, reason)

    def lift(self, rule: str, digest: str) -> None:
        """End the ban ``digest`` (as :class:`Ban` has it) from ``rule`` in this process."""
        self.local_bans.lift(rule, digest)

    def _resolver(self) -> IdentityResolver | None:
        state = getattr(self._owner(), "_state", None)
        return getattr(state, "resolver", None)

    # -- the loop --------------------------------------------------------------

    def start(self) -> None:
        if self._pid == os.getpid() or self.config.interval_seconds <= 0:
            return  # running already, or no loop wanted: the owner calls tick() itself
        if self._pid:  # a forked child: a lock held at fork time would stay held here
            self.stats.renew_locks()
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.local_bans.lock = threading.Lock()
        self.fleet.forget()  # and a forked child opens its own connection
        self.fleet.store = None
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
        if self.fleet.store is not None:
            with self._lock:  # top offenders gathered since the last pass and push
                self._drain.drain(self._wall())
                self.fleet.close([(n, r.pending) for n, r in self.rules.items()], self._wall())

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
            otel.refresh()  # a tracer provider installed after the limiter was made
            counts, shown = self._drain.drain(wall)
            self._drain.prune(wall)
            self._check_spikes(mono)
            owner = self._owner()
            if owner is not None and self.config.metrics:
                owner._arm_samples()
            client = self._client()
            if client is not None:
                try:
                    self._sync(client, counts, shown, wall, mono)
                except Exception as exc:  # Redis down: carry on locally, loudly but once
                    self.fleet.forget()  # fetch everything once it is back
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
            self.local_bans.expire(wall, shared=self._redis_url is not None)
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
        try:
            return self.fleet.client(getattr(self._owner(), "engine", None), self._redis_url)
        except StoreError:
            return None

    def tracked(self) -> dict[str, int]:
        """Entries of per-identity state held now: penalty windows and bans stay within
        ``max_identities`` per rule, address bans and unsent bans within it in all, the
        digest memo within its own limit."""
        held = self.local_bans.tracked()
        return {
            "penalty_windows": len(self._drain.windows),
            "bans": held["bans"],
            "addressed": held["addressed"],
            "memo": len(self._memo),
            "unsent": held["unsent"],
        }

    def _sync(
        self,
        client: Any,
        counts: dict[Pair, int],
        shown: dict[Pair, str],
        wall: float,
        mono: float,
    ) -> None:
        windows = self._drain.periods()
        for round_no in range(2):  # a second only for penalty bans the fleet's counts made
            unsent = self.local_bans.unsent()
            totals, fetched = self.fleet.exchange(
                client, mono=mono, wall=wall, counts=counts, windows=windows, unsent=unsent,
                pending=[] if round_no else [(n, r.pending) for n, r in self.rules.items()],
            )  # fmt: skip
            if unsent:  # on failure they stay for the next pass
                self.local_bans.sent(unsent)
            if fetched is not None:
                bans.apply_fleet(self.local_bans, fetched)
                self._fleet_brownout = fetched.brownout
            counts = {}
            self._drain.ban_by_fleet(totals, shown)
            if self.local_bans.all_sent():
                return

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

    def _check_spikes(self, mono: float) -> None:
        totals: Counter[str] = Counter()
        for stats in self.stats.all():
            totals[stats.labels[0]] += stats.rejected + stats.challenged
        for rule, total in totals.items():
            alert = self.spikes.observe(rule, total, mono)
            if alert is not None:
                self.spike_alerts[alert.rule] += 1
                announce(alert, self.config)
