"""The Lua scripts of LEASES.md §5 (read once, shared by both twins) and their wire formats.

Scripts take and return microseconds; the stores speak seconds. Argument builders and
reply parsers live here so the sync and async stores cannot drift apart.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from importlib import resources

from ratemw.store.base import (
    HeartbeatResult,
    SlotResult,
    TakeCall,
    TakeResult,
    WindowResult,
)

__all__ = ["SCRIPT_NAMES", "source"]

SCRIPT_NAMES = (
    "take",
    "give",
    "window_take",
    "window_give",
    "slot_acquire",
    "slot_renew",
    "slot_release",
    "heartbeat",
)

_US = 1_000_000


def _read(name: str) -> str:
    return resources.files("ratemw.resources").joinpath("lua").joinpath(name).read_text("utf-8")


@functools.cache
def source(name: str) -> str:
    """The full text of script ``name``: the shared prelude, then the operation."""
    if name not in SCRIPT_NAMES:
        raise KeyError(name)
    return _read("_prelude.lua") + "\n" + _read(f"{name}.lua")


def _us(seconds: float) -> str:
    return repr(float(seconds) * _US)


def _wait(us: int) -> float:
    return math.inf if us < 0 else us / _US


def take_args(call: TakeCall, now: float) -> list[str]:
    interval_us = call.period_seconds * _US / call.limit
    burst = call.limit if call.burst is None else call.burst
    minimum = call.want if call.minimum is None else call.minimum
    return [
        repr(interval_us),
        repr(interval_us * burst),
        str(call.want),
        str(minimum),
        str(int(call.mode)),
        _us(call.horizon_seconds),
        str(call.want if call.reserve_want is None else call.reserve_want),
        _us(now),
    ]


def take_reply(reply: Sequence[int]) -> TakeResult:
    return TakeResult(int(reply[0]), _wait(int(reply[1])), reply[2] / _US, int(reply[3]))


def give_args(n: int, limit: int, period_seconds: float, now: float) -> list[str]:
    return [repr(period_seconds * _US / limit), str(n), _us(now)]


def window_take_args(
    want: int, minimum: int | None, limit: int, window_seconds: float, now: float
) -> list[str]:
    floor = want if minimum is None else minimum
    return [_us(window_seconds), str(limit), str(want), str(floor), _us(now)]


def window_take_reply(reply: Sequence[int]) -> WindowResult:
    granted, wait, server_us, window, end_us = (int(x) for x in reply[:5])
    return WindowResult(granted, _wait(wait), server_us / _US, window, end_us / _US)


def window_give_args(n: int, window_seconds: float, window: int, now: float) -> list[str]:
    return [_us(window_seconds), str(n), str(window), _us(now)]


def slot_acquire_args(limit: int, slot_id: str, ttl_seconds: float, now: float) -> list[str]:
    return [str(limit), slot_id, _us(ttl_seconds), _us(now)]


def slot_acquire_reply(reply: Sequence[int]) -> SlotResult:
    return SlotResult(bool(reply[0]), int(reply[1]), _wait(int(reply[3])), reply[2] / _US)


def slot_renew_args(slot_id: str, ttl_seconds: float, now: float) -> list[str]:
    return [slot_id, _us(ttl_seconds), _us(now)]


def slot_release_args(slot_id: str, now: float) -> list[str]:
    return [slot_id, _us(now)]


def heartbeat_args(process_id: str, liveness_seconds: float, now: float) -> list[str]:
    return [process_id, _us(liveness_seconds), _us(now)]


def heartbeat_reply(reply: Sequence[int]) -> HeartbeatResult:
    return HeartbeatResult(int(reply[0]), reply[1] / _US)
