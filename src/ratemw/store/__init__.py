"""Stores: shared limiter state (LEASES.md §4-5), each with its asyncio twin beside it
(``*_aio``). ``RedisStore`` and ``AsyncRedisStore`` need ``ratemw[redis]``; importing
this package does not import redis."""

from __future__ import annotations

from ratemw.store._keys import KeyBuilder
from ratemw.store.base import (
    AsyncStore,
    HeartbeatResult,
    SlotResult,
    Store,
    StoreUnavailable,
    TakeCall,
    TakeMode,
    TakeResult,
    WindowResult,
)
from ratemw.store.breaker import CircuitBreaker
from ratemw.store.memory import MemoryStore
from ratemw.store.memory_aio import AsyncMemoryStore
from ratemw.store.redis import RedisStore
from ratemw.store.redis_aio import AsyncRedisStore

__all__ = [
    "AsyncMemoryStore",
    "AsyncRedisStore",
    "AsyncStore",
    "CircuitBreaker",
    "HeartbeatResult",
    "KeyBuilder",
    "MemoryStore",
    "RedisStore",
    "SlotResult",
    "Store",
    "StoreUnavailable",
    "TakeCall",
    "TakeMode",
    "TakeResult",
    "WindowResult",
]
