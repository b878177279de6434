"""Rate and duration notation used in rules files.

Rates follow the notation of Flask-Limiter and ``limits`` (``5/minute``,
``10 per second``, ``100/5 minutes``), including their calendar-free
``month`` (30 days) and ``year`` (12 such months, 360 days). Durations are
``200ms``, ``1s``, ``15m``, ``2h``, ``1d`` or a bare number of seconds.
"""

from __future__ import annotations

import math
import re

from ratemw.rules.model import MAX_COUNT, MAX_PERIOD_SECONDS, Rate

__all__ = ["PERIODS", "parse_duration", "parse_rate", "split_limits"]

#: seconds per granularity, as ``limits.limits.TIME_TYPES`` defines them.
PERIODS: dict[str, int] = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86400,
    "month": 30 * 86400,
    "year": 12 * 30 * 86400,
}

_RATE = re.compile(
    r"""\s*(?P<count>[-+]?\d+)\s*
        (?:/|\s+per\s+|per\s+)\s*
        (?:(?P<multiple>[-+]?\d+)\s*)?
        (?P<unit>[a-z]+)\s*""",
    re.IGNORECASE | re.VERBOSE,
)
# ``limits`` accepts these separators between several limits in one string.
_SEPARATORS = re.compile(r"[,;|]")

_DURATION = re.compile(r"\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>ms|s|m|h|d)?\s*")
_DURATION_UNITS: dict[str, float] = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_rate(text: str) -> Rate:
    """Parse one limit such as ``5/minute`` or ``100 per 5 minutes``.

    Returns a :class:`Rate` whose ``text`` is the stripped input. Raises
    ``ValueError`` with the reason when the text is not a limit, names an
    unknown period, allows zero or fewer requests, counts more than
    :data:`~ratemw.rules.model.MAX_COUNT` or spans more than
    :data:`~ratemw.rules.model.MAX_PERIOD_SECONDS`.
    """
    if not isinstance(text, str):
        raise ValueError(f"a limit must be a string like '5/minute', got {type(text).__name__}")
    stripped = text.strip()
    shown = repr(stripped if len(stripped) <= 60 else stripped[:57] + "...")
    m = _RATE.fullmatch(text)
    if m is None:
        raise ValueError(
            f"cannot parse limit {shown}: expected COUNT/PERIOD like "
            "'5/minute', '10 per second' or '100/5 minutes'"
        )
    unit = m["unit"].lower()
    if unit not in PERIODS and unit.endswith("s"):
        unit = unit[:-1]
    if unit not in PERIODS:
        known = ", ".join(PERIODS)
        raise ValueError(f"unknown period {m['unit']!r} in limit {shown} (known: {known})")
    # Digits are counted first: int() of thousands of digits is refused (or slow).
    count = _int(m["count"])
    multiple = _int(m["multiple"]) if m["multiple"] is not None else 1
    if count <= 0:
        raise ValueError(f"rate of zero or less in limit {shown}: nothing could pass")
    if multiple <= 0:
        raise ValueError(f"period of zero or less in limit {shown}")
    if count > MAX_COUNT:
        raise ValueError(f"the count of limit {shown} is above the maximum of {MAX_COUNT:_}")
    seconds = multiple * PERIODS[unit]
    if seconds > MAX_PERIOD_SECONDS:
        raise ValueError(
            f"period of limit {shown} is longer than the maximum of "
            f"{MAX_PERIOD_SECONDS // 86400} days"
        )
    return Rate(count=count, period_seconds=float(seconds), text=text.strip())


def _int(digits: str) -> int:
    # Past 18 digits every bound is exceeded: never convert thousands of digits.
    sign = -1 if digits.startswith("-") else 1
    core = digits.lstrip("+-").lstrip("0") or "0"
    return sign * (int(core) if len(core) <= 18 else 10**18)


def split_limits(text: str) -> list[str]:
    """Split ``"10/second; 100/minute"`` into its limits (``;``, ``,`` or ``|``)."""
    return [part.strip() for part in _SEPARATORS.split(text)]


def parse_duration(value: str | float) -> float:
    """Parse ``200ms``, ``1s``, ``15m``, ``2h``, ``1d`` or a bare number into seconds.

    Raises ``ValueError`` for anything else, including negative, infinite or
    boolean values.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like '200ms' or '15m', got {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m is None:
            raise ValueError(
                f"cannot parse duration {value.strip()!r}: expected a number with ms, s, m, h or d"
            )
        seconds = float(m["number"]) * _DURATION_UNITS[m["unit"] or "s"]
    else:
        raise ValueError(f"expected a duration like '200ms' or '15m', got {type(value).__name__}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds
