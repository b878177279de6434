"""asyncio twins of ratemw's I/O classes (same names, ``async def``, ``aclose()``)."""

from __future__ import annotations
