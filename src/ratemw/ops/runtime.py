"""``Operations``: the per-limiter loop behind bans, top offenders, spikes and logs.

The hot path only counts into :class:`~ratemw.ops.stats.RuleStats`, queues rejected
identities and reads ``RuleOps.bans``. Every ``interval_seconds`` a daemon thread
drains the queues into the top-offender sketches, the penalty counters and the
rejection log, checks for spikes, and (with Redis) makes at most one pipelined round
trip carrying what is due (``ops/fleet.py``): penalty counts, new bans, top offenders
every few seconds, the version of bans and brownout when no heartbeat brought it; the
fleet's bans and brownout are fetched only when that version changed.

Per-identity state is bounded (``OpsConfig.max_identities``, default the limiter's
``max_keys``): penalty windows are dropped once their window has passed (every pass)
and, past the bound, oldest first; bans beyond it are not held in memory.
An ``ip:`` ban given by address (``{bans}:a``) is mapped to this limiter's identity key
by its resolver, as a request from that address would be; a network wider than one
key is kept apart (``RuleOps.wide``) and checked only while one is in force.
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

from ratemw.addresses import IPNetwork, parse_network
from ratemw.errors import StoreError
from ratemw.identity.resolver import UNKNOWN_ADDRESS
from ratemw.ops import bans, otel
from ratemw.ops.config import OpsConfig
from ratemw.ops.events import RejectionLog, announce
from ratemw.ops.export import WeakSource, process_exporter
from ratemw.ops.fleet import FleetSync
from ratemw.ops.fleet_counts import FleetCounts
from ratemw.ops.penalty import PenaltyWindows
from ratemw.ops.rule_ops import RuleOps
from ratemw.ops.shared import Ban, Brownout, Layout, ip_ban
from ratemw.ops.spikes import SpikeDetector
from ratemw.ops.stats import RuleStats, StatsRegistry
from ratemw.store._keys import _hash_key, identity_digest

if TYPE_CHECKING:
    from ratemw.identity.resolver import IdentityResolver
    from ratemw.rules.compile import CompiledRule

__all__ = ["Operations", "RuleOps"]

log = logging.getLogger("ratemw")
events = logging.getLogger("ratemw.events")
_MEMO_LIMIT = 50_000
_DEFAULT_MAX_IDENTITIES = 100_000  # ratemw.algorithms.tables.DEFAULT_MAX_KEYS
_Pair = tuple[str, str]  # (rule, identity digest)


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
        self.bans_started: Counter[str] = Counter()
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
        self._penalty = PenaltyWindows(self.max_identities)  # local windows
        #: bans given by address -> (the address, the ban's end), for lift()
        self._addressed: dict[_Pair, tuple[str, float]] = {}
        self._unsent: list[Ban] = []
        self.rejections = RejectionLog(config.log_every, config.log_per_second)
        self._lock = threading.Lock()  # one pass at a time
        self._bans_lock = threading.Lock()
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
        table = rops.bans
        until = table.get(self.digest(key))
        if until is None:
            if bans.WIDE not in table:
                return 0.0
            until = bans.wide_until(rops, key)
            if until is None:
                return 0.0
        left = until - self._wall()
        return left if left > 0 else 0.0

    # -- bans ------------------------------------------------------------------

    def ban(self, rule: str, identity: Hashable, seconds: float, reason: str = "manual") -> Ban:
        """Ban ``identity`` (a rule key, as ``key_of`` returns it) from ``rule``.

        For an ``identity: ip`` rule, ``identity`` may be any address or network of
        clients (IPv6 addresses are mapped to the rule's prefix group, as requests are).
        Raises ``KeyError`` for a rule this limiter has never had, ``ValueError`` for an
        address that cannot be a client's (:func:`ratemw.addresses.ban_network`).
        """
        rops = self.rules.get(rule)
        if rops is None:
            raise KeyError(f"no rule named {rule!r}")
        if rops.ip and isinstance(identity, str) and identity != UNKNOWN_ADDRESS:
            digest, shown = ip_ban(identity, self._key)
            return self._ban(rops, digest, shown, seconds, reason, address=shown)
        return self._ban(rops, self.digest(identity), self.shown(rops, identity), seconds, reason)

    def _ban(
        self, rops: RuleOps, digest: str, shown: str, seconds: float, reason: str,
        address: str = "",
    ) -> Ban:  # fmt: skip
        ban = Ban(rops.name, digest, shown, self._wall() + seconds, reason, address)
        mapped, net = self._mapped(rops, address) if address else (digest, None)
        if net is not None:
            bans.install(rops, dict(rops.bans), [*rops.wide, (net, ban.until)])
        elif mapped is not None and (
            mapped in rops.bans or len(rops.bans) < self.max_identities
        ):  # past the bound the ban still reaches Redis, and other processes
            rops.bans = {**rops.bans, mapped: ban.until}
        if address:
            self._addressed[(rops.name, digest)] = (address, ban.until)
            if len(self._addressed) > self.max_identities:
                del self._addressed[next(iter(self._addressed))]
        self.bans_started[rops.name] += 1
        with self._bans_lock:
            self._unsent.append(ban)
            if len(self._unsent) > self.max_identities:  # Redis down for long: newest kept
                del self._unsent[: len(self._unsent) - self.max_identities]
        events.warning(
            "ratemw banned rule=%s identity=%s seconds=%.0f reason=%s",
            rops.name, shown, seconds, reason,
            extra={"ratemw": {"event": "ratemw.ban", "rule": rops.name, "identity": shown,
                              "seconds": seconds, "reason": reason}},
        )  # fmt: skip
        return ban

    def lift(self, rule: str, digest: str) -> None:
        """End the ban ``digest`` (as :class:`Ban` has it) from ``rule`` in this process."""
        rops = self.rules.get(rule)
        if rops is None:
            return
        gone = {digest}
        wide = list(rops.wide)
        found = self._addressed.pop((rule, digest), None)
        if found is not None:
            address = found[0]
            mapped, net = self._mapped(rops, address)
            gone.add(mapped or "")
            wide = [(n, u) for n, u in wide if n != net]
        kept = {d: u for d, u in rops.bans.items() if d not in gone}
        bans.install(rops, kept, wide)

    def _resolver(self) -> IdentityResolver | None:
        state = getattr(self._owner(), "_state", None)
        return getattr(state, "resolver", None)

    def _mapped(self, rops: RuleOps, address: str) -> tuple[str | None, IPNetwork | None]:
        """What an address ban means to this limiter: the digest of the identity key a
        request from it has (``ip`` rules; else the key it falls back to), or the
        network when it spans several keys."""
        resolver = self._resolver()
        try:
            net = parse_network(address, strict=False)
        except ValueError:
            return None, None
        if resolver is None:
            return None, net
        key = resolver.key_of_network(net)
        if key is None:
            return None, net
        return self.digest(key if rops.ip else ("ip", key)), None

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
                self._drain(self._wall())
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
            counts, shown = self._drain(wall)
            self._penalty.prune(wall, {
                rule: rops.penalty.after.period_seconds
                for rule, rops in self.rules.items() if rops.penalty is not None
            })  # fmt: skip
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
        try:
            return self.fleet.client(getattr(self._owner(), "engine", None), self._redis_url)
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
        count = self._penalty.add(rops.name, penalty.after.period_seconds, digest, n, wall)
        if count >= penalty.after.count and digest not in rops.bans:
            self._penalty.drop(rops.name, digest)
            self._ban(rops, digest, shown, penalty.ban_seconds, f"penalty {penalty.after}")

    def tracked(self) -> dict[str, int]:
        """Entries of per-identity state held now: penalty windows and bans stay within
        ``max_identities`` per rule, address bans and unsent bans within it in all, the
        digest memo within its own limit."""
        return {
            "penalty_windows": len(self._penalty),
            "bans": sum(bans.count(r) for r in self.rules.values()),
            "addressed": len(self._addressed),
            "memo": len(self._memo),
            "unsent": len(self._unsent),
        }

    def _sync(
        self,
        client: Any,
        counts: dict[_Pair, int],
        shown: dict[_Pair, str],
        wall: float,
        mono: float,
    ) -> None:
        windows = {
            rule: rops.penalty.after.period_seconds
            for rule, rops in self.rules.items()
            if rops.penalty is not None
        }
        for round_no in range(2):  # a second only for penalty bans the fleet's counts made
            with self._bans_lock:
                unsent = list(self._unsent)
            totals, fetched = self.fleet.exchange(
                client, mono=mono, wall=wall, counts=counts, windows=windows, unsent=unsent,
                pending=[] if round_no else [(n, r.pending) for n, r in self.rules.items()],
            )  # fmt: skip
            if unsent:  # on failure they stay for the next pass
                with self._bans_lock:
                    self._unsent = [b for b in self._unsent if b not in unsent]
            if fetched is not None:
                bans.apply_fleet(self, fetched)
                self._fleet_brownout = fetched.brownout
            counts = {}
            for (rule, digest), total in totals.items():
                rops = self.rules[rule]
                assert rops.penalty is not None
                if total >= rops.penalty.after.count and digest not in rops.bans:
                    self._ban(rops, digest, shown[(rule, digest)], rops.penalty.ban_seconds,
                              f"penalty {rops.penalty.after} (fleet)")  # fmt: skip
            if not self._unsent:
                return

    def _expire_local(self, wall: float) -> None:
        for rops in list(self.rules.values()):
            if any(u <= wall for u in rops.bans.values()):
                kept = {d: u for d, u in rops.bans.items() if u > wall}
                bans.install(rops, kept, [(n, u) for n, u in rops.wide if u > wall])
        if self._redis_url is None:
            self._unsent.clear()
        self._addressed = {p: (a, u) for p, (a, u) in self._addressed.items() if u > wall}

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
