"""asyncio stores: ``AsyncRedisStore`` (needs ``ratemw[redis]``) and ``AsyncMemoryStore``."""

from __future__ import annotations

from ratemw.aio.store.memory import AsyncMemoryStore
from ratemw.aio.store.redis import AsyncRedisStore

__all__ = ["AsyncMemoryStore", "AsyncRedisStore"]
