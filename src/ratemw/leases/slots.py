"""Concurrency limits: in-flight slots, per process or global (LEASES.md §10).

A concurrency rule gets a :class:`~ratemw.algorithms.concurrency.LocalSlots` (a counter
per key in this process)
or, when the limiter has a store, a :class:`SharedSlots`: a slot is a member of a
sorted set scored by its deadline, so a crashed worker's slots expire by
themselves; the reconcile loop renews slots held longer than a third of their
lifetime; release is idempotent. While the store is unreachable each process
admits at most ``max(1, floor(C / P_exp))`` per key, or follows the rule's
``on_store_error`` (``open`` admits, ``closed`` answers 503).
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Protocol

from ratemw.algorithms.concurrency import RETRY_SECONDS as _RETRY_SECONDS
from ratemw.algorithms.concurrency import ConcurrencyLimit, Slot
from ratemw.errors import StoreClosed, StoreError

if TYPE_CHECKING:
    from ratemw.algorithms.tables import KeyTable
    from ratemw.rules.model import Rule

__all__ = ["DEFAULT_SLOT_TTL_SECONDS", "SharedSlot", "SharedSlots", "SlotRule"]


class SlotRule(Protocol):
    """What global slots read of a compiled rule (``ratemw.rules.compile.CompiledRule``,
    which builds local slots from this module, so it is typed here, not imported)."""

    @property
    def name(self) -> str: ...
    @property
    def rule(self) -> Rule: ...


DEFAULT_SLOT_TTL_SECONDS = 30.0


class SharedSlot:
    """One slot held in the store; ``release()`` gives it back exactly once."""

    __slots__ = ("_token", "engine", "key", "local", "rule_name", "slot_id")

    def __init__(
        self, engine: Any, key: str, slot_id: str, local: Slot | None = None, rule_name: str = ""
    ) -> None:
        self.engine = engine
        self.rule_name = rule_name  # for ratemw_inflight
        self.key = key
        self.slot_id = slot_id
        self.local = local  # the per-process slot taken while the store was unreachable
        self._token: list[bool] = [True]  # list.pop() is atomic: one caller wins

    def release(self) -> bool:
        try:
            self._token.pop()
        except IndexError:
            return False
        if self.local is not None:
            self.local.release()
        else:
            self.engine.release_slot(self)
        return True


class SharedSlots:
    """A concurrency rule enforced across processes through the store."""

    def __init__(self, rule: SlotRule, engine: Any, table: KeyTable[Any], ttl: float) -> None:
        self.rule = rule
        self.engine = engine
        self.shared = self
        self.limit = rule.rule.concurrency or 1
        self.ttl = ttl
        self.on_store_error = rule.rule.on_store_error
        self.table = table  # local fallback slots, capped at this process's share
        self.store_id = f"{rule.name}|c"

    def _args(self, key: Hashable) -> tuple[str, str, dict[str, Any]]:
        store_key = self.engine.keys.key(self.store_id, key, "c")
        return store_key, uuid.uuid4().hex, {"limit": self.limit, "ttl_seconds": self.ttl}

    def _answer(
        self, store_key: str, slot_id: str, acquired: bool, wait: float
    ) -> tuple[SharedSlot | None, float]:
        if not acquired:
            return None, max(wait, _RETRY_SECONDS) if wait < float("inf") else _RETRY_SECONDS
        slot = SharedSlot(self.engine, store_key, slot_id, rule_name=self.rule.name)
        self.engine.hold_slot(slot, self.ttl)
        return slot, 0.0

    def acquire(self, key: Hashable, now: float) -> tuple[Any, float]:
        store_key, slot_id, args = self._args(key)
        try:
            r = self.engine.slot_acquire(store_key, slot_id, **args)
        except StoreError:
            return self.fallback(key, now)
        return self._answer(store_key, slot_id, r.acquired, r.wait_seconds)

    async def aacquire(self, key: Hashable, now: float) -> tuple[Any, float]:
        store_key, slot_id, args = self._args(key)
        try:
            r = await self.engine.slot_acquire(store_key, slot_id, **args)
        except StoreError:
            return self.fallback(key, now)
        return self._answer(store_key, slot_id, r.acquired, r.wait_seconds)

    def fallback(self, key: Hashable, now: float) -> tuple[Any, float]:
        if self.on_store_error == "closed":
            raise StoreClosed(self.engine.retry_after(now))
        if self.on_store_error == "open":
            return SharedSlot(self.engine, "", "", local=_NoSlot()), 0.0  # type: ignore[arg-type]
        share = ConcurrencyLimit(max(1, self.limit // max(1, self.engine.processes)))
        with self.table.lock:
            state = self.table.get(key, now)
            acquired = share.acquire(state)
        if not acquired:
            return None, _RETRY_SECONDS
        return SharedSlot(self.engine, "", "", local=Slot(state, self.table.lock)), 0.0


class _NoSlot:
    def release(self) -> bool:
        return True
