from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw.rules.model import MAX_PERIOD_SECONDS
from ratemw.rules.notation import PERIODS, parse_duration, parse_rate, split_limits


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [
        ("5/minute", 5, 60),
        ("10 per second", 10, 1),
        ("100/5 minutes", 100, 300),
        ("100 per 5 minutes", 100, 300),
        ("1000/hour", 1000, 3600),
        ("1/day", 1, 86400),
        ("2/days", 2, 86400),
        ("3/month", 3, 30 * 86400),
        ("4/year", 4, 360 * 86400),
        ("  7 / 2 Seconds ", 7, 2),
        ("9 PER MINUTE", 9, 60),
    ],
)
def test_parse_rate(text: str, count: int, seconds: float) -> None:
    rate = parse_rate(text)
    assert (rate.count, rate.period_seconds) == (count, seconds)
    assert rate.text == text.strip()
    assert str(rate) == text.strip()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("five/minute", "cannot parse limit"),
        ("5/fortnight", "unknown period 'fortnight'"),
        ("5/ms", "unknown period 'ms'"),
        ("5", "cannot parse limit"),
        ("", "cannot parse limit"),
        ("0/minute", "rate of zero or less"),
        ("-3/minute", "rate of zero or less"),
        ("5/0 minutes", "period of zero or less"),
        ("5/minute/hour", "cannot parse limit"),
    ],
)
def test_parse_rate_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_rate(text)


def test_parse_rate_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        parse_rate(5)  # type: ignore[arg-type]


def test_split_limits() -> None:
    assert split_limits("10/second; 100/minute") == ["10/second", "100/minute"]
    assert split_limits("1/second,2/minute|3/hour") == ["1/second", "2/minute", "3/hour"]


@given(
    count=st.integers(min_value=1, max_value=10**9),
    multiple=st.integers(min_value=1, max_value=1000),
    unit=st.sampled_from(sorted(PERIODS)),
    plural=st.booleans(),
    sep=st.sampled_from(["/", " per ", "/ ", " / "]),
)
def test_parse_rate_roundtrip(count: int, multiple: int, unit: str, plural: bool, sep: str) -> None:
    text = f"{count}{sep}{multiple} {unit}{'s' if plural else ''}"
    if multiple * PERIODS[unit] > MAX_PERIOD_SECONDS:
        with pytest.raises(ValueError, match="longer than the maximum of 3650 days"):
            parse_rate(text)
        return
    rate = parse_rate(text)
    assert rate.count == count
    assert rate.period_seconds == multiple * PERIODS[unit]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("200ms", 0.2),
        ("1s", 1.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1.5s", 1.5),
        (" 30 s ", 30.0),
        ("45", 45.0),
        (3, 3.0),
        (0.25, 0.25),
        ("0", 0.0),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["soon", "5 minutes", "1w", "-1s", "", "1e3", "ms"])
def test_parse_duration_rejects_text(value: str) -> None:
    with pytest.raises(ValueError, match="cannot parse duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan")])
def test_parse_duration_rejects_numbers(value: float) -> None:
    with pytest.raises(ValueError, match="finite number of seconds"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, None, [1]])
def test_parse_duration_rejects_other_types(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)  # type: ignore[arg-type]
