"""FixedWindow and SlidingWindow: explicit-time cases and hypothesis properties."""

from __future__ import annotations

import copy
import math
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratemw.algorithms import TIME_SLACK_SECONDS, FixedWindow, SlidingWindow

SLACK = TIME_SLACK_SECONDS
WINDOWS = [FixedWindow, SlidingWindow]


@pytest.fixture(params=WINDOWS, ids=lambda c: c.__name__)
def window_cls(request: pytest.FixtureRequest) -> type[FixedWindow] | type[SlidingWindow]:
    return request.param  # type: ignore[no-any-return]


def test_windows_align_to_the_clock(window_cls: type[FixedWindow]) -> None:
    alg = window_cls(2, 10.0)
    state = alg.new_state(25.0)  # window [20, 30)
    assert alg.take(state, 25.0, 2) == 0.0
    assert alg.remaining(state, 29.0) == 0
    assert alg.reset_after(state, 25.0) >= 5.0


def test_cost_above_limit_is_never_granted_and_not_cached(window_cls: type[FixedWindow]) -> None:
    alg = window_cls(3, 1.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.0, 4) == math.inf
    assert state.denied_until == -math.inf
    assert alg.take(state, 0.0, 3) == 0.0


@pytest.mark.parametrize(("limit", "window"), [(0, 1.0), (1, 0.0), (1, -1.0), (1, math.inf)])
def test_invalid_parameters(window_cls: type[FixedWindow], limit: int, window: float) -> None:
    with pytest.raises(ValueError):
        window_cls(limit, window)


def test_fixed_window() -> None:
    alg = FixedWindow(3, 10.0)
    state = alg.new_state(12.0)
    assert alg.at_rest(state, 12.0)
    assert alg.remaining(state, 12.0) == 3
    assert [alg.take(state, t, 1) for t in (12.0, 13.0, 14.0)] == [0.0, 0.0, 0.0]
    assert alg.reset_after(state, 14.0) == pytest.approx(6.0)
    wait = alg.take(state, 15.0, 1)
    assert wait == pytest.approx(5.0 + SLACK)
    assert alg.take(state, 19.0, 1) == pytest.approx(1.0 + SLACK)  # deny cache
    assert not alg.at_rest(state, 19.0)
    assert alg.take(state, 15.0 + wait, 1) == 0.0  # next window: [20, 30)
    assert alg.remaining(state, 21.0) == 2
    assert alg.remaining(state, 30.0) == 3
    assert alg.reset_after(state, 30.0) == 0.0
    assert alg.at_rest(state, 30.0)


def test_fixed_window_give_only_inside_the_same_window() -> None:
    alg = FixedWindow(2, 10.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 1.0, 2) == 0.0
    assert alg.take(state, 1.0, 1) > 0.0
    alg.give(state, 2.0, 1)
    assert state.denied_until == -math.inf
    assert alg.remaining(state, 2.0) == 1
    alg.give(state, 2.0, 5)
    assert alg.remaining(state, 2.0) == 2
    assert alg.take(state, 9.0, 2) == 0.0
    alg.give(state, 10.0, 2)  # window over: nothing to refund
    assert alg.take(state, 10.0, 2) == 0.0
    assert alg.remaining(state, 10.0) == 0


def test_sliding_window_waits_for_the_previous_window_to_decay() -> None:
    alg = SlidingWindow(10, 10.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 5.0, 10) == 0.0
    # At 10.0 the previous window still weighs fully; the estimate is 10 * (1 - f).
    wait = alg.take(state, 10.0, 1)
    assert wait == pytest.approx(1.0 + SLACK)
    assert alg.remaining(state, 10.0) == 0
    assert alg.remaining(state, 15.0) == 5
    assert alg.take(state, 10.0 + wait, 1) == 0.0
    assert alg.take(state, 15.0, 4) == 0.0  # 10 * 0.5 + 1 + 4 == 10
    assert alg.take(state, 15.0, 1) > 0.0


def test_sliding_window_wait_can_reach_into_the_next_window() -> None:
    alg = SlidingWindow(10, 10.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 5.0, 10) == 0.0
    # This window's 10 must decay, as next window's previous count, to 9: at t = 11.
    wait = alg.take(state, 6.0, 1)
    assert wait == pytest.approx(5.0 + SLACK)
    retry = copy.copy(state)
    retry.denied_until = -math.inf
    assert alg.take(retry, 10.5, 1) > 0.0
    assert alg.take(state, 6.0 + wait, 1) == 0.0
    # Cost == limit: only once the previous window stops weighing, at the window after.
    state = alg.new_state(0.0)
    assert alg.take(state, 5.0, 1) == 0.0
    assert alg.take(state, 6.0, 10) == pytest.approx(14.0 + SLACK)


def test_sliding_window_forgets_after_a_gap_of_two_windows() -> None:
    alg = SlidingWindow(4, 1.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.5, 4) == 0.0
    assert alg.reset_after(state, 0.5) == pytest.approx(1.5)
    assert not alg.at_rest(state, 1.9)
    assert alg.at_rest(state, 2.0)
    assert alg.remaining(state, 2.1) == 4
    assert alg.take(state, 2.1, 4) == 0.0


def test_sliding_window_give() -> None:
    alg = SlidingWindow(4, 1.0)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.5, 4) == 0.0
    assert alg.take(state, 0.5, 1) > 0.0
    alg.give(state, 0.6, 2)
    assert state.denied_until == -math.inf
    assert alg.remaining(state, 0.6) == 2
    alg.give(state, 0.6, 10)
    assert alg.remaining(state, 0.6) == 4
    assert alg.take(state, 0.7, 4) == 0.0
    alg.give(state, 1.5, 4)  # now the previous window: not refunded
    assert alg.remaining(state, 1.5) == 2


# Properties ---------------------------------------------------------------------------


@st.composite
def window_runs(draw: st.DrawFn) -> tuple[int, float, float, list[tuple[float, int]]]:
    limit = draw(st.integers(min_value=1, max_value=12))
    window = draw(st.sampled_from([0.5, 1.0, 3.7, 10.0, 60.0]))
    start = draw(st.floats(min_value=0.0, max_value=1e6))
    steps = draw(
        st.lists(
            st.tuples(
                # Mostly short steps, so windows fill up, with some long gaps.
                st.one_of(
                    st.floats(min_value=0.0, max_value=0.2),
                    st.floats(min_value=0.0, max_value=2.5),
                ),
                st.integers(min_value=1, max_value=limit + 1),
            ),
            max_size=60,
        )
    )
    return limit, window, start, [(k * window, cost) for k, cost in steps]


def _index(now: float, window: float) -> float:
    return (now / window) // 1.0


def _check_wait(alg: FixedWindow | SlidingWindow, state: object, now: float, cost: int) -> None:
    """After a fresh refusal: retrying at now + wait succeeds, slightly before fails."""
    wait = state.denied_until - now  # type: ignore[attr-defined]
    retry = copy.copy(state)
    assert alg.take(retry, now + wait, cost) == 0.0  # type: ignore[arg-type]
    if wait > 1e-3:
        early = copy.copy(state)
        early.denied_until = -math.inf  # type: ignore[attr-defined]
        assert alg.take(early, now + wait - 1e-4, cost) > 0.0  # type: ignore[arg-type]


@settings(deadline=None, max_examples=300)
@given(run=window_runs())
def test_fixed_window_admits_at_most_limit_per_window(
    run: tuple[int, float, float, list[tuple[float, int]]],
) -> None:
    limit, window, now, steps = run
    alg = FixedWindow(limit, window)
    state = alg.new_state(now)
    per_window: Counter[float] = Counter()
    for dt, cost in steps:
        now += dt
        cached = now < state.denied_until
        expected = per_window[_index(now, window)] + cost <= limit
        wait = alg.take(state, now, cost)
        if wait == 0.0:
            per_window[_index(now, window)] += cost
            assert per_window[_index(now, window)] <= limit
        elif not cached and cost <= limit:
            assert not expected
            _check_wait(alg, state, now, cost)
        if not cached:
            assert (wait == 0.0) == expected


@settings(deadline=None, max_examples=300)
@given(run=window_runs())
def test_sliding_window_stays_within_its_bounds(
    run: tuple[int, float, float, list[tuple[float, int]]],
) -> None:
    limit, window, now, steps = run
    alg = SlidingWindow(limit, window)
    state = alg.new_state(now)
    per_window: Counter[float] = Counter()
    admitted: list[tuple[float, int]] = []
    for dt, cost in steps:
        now += dt
        cached = now < state.denied_until
        x = now / window
        idx = x // 1.0
        estimate = per_window[idx - 1.0] * (1.0 - (x - idx)) + per_window[idx]
        wait = alg.take(state, now, cost)
        if wait == 0.0:
            per_window[idx] += cost
            admitted.append((now, cost))
            assert per_window[idx] <= limit
        if not cached and abs(estimate + cost - limit) > 1e-9:
            # Admits exactly when the weighted estimate allows.
            assert (wait == 0.0) == (estimate + cost <= limit)
        if wait and not cached and cost <= limit:
            _check_wait(alg, state, now, cost)
    # Any interval [t, t + window) starting at an admission: at most limit + prev * f,
    # prev being the count of t's calendar window and f the elapsed fraction at t + window.
    for i, (start, _) in enumerate(admitted):
        x = start / window
        idx = x // 1.0
        total = sum(cost for t, cost in admitted[i:] if t < start + window)
        bound = limit + per_window[idx] * (x - idx)
        assert total <= bound + 1e-9
        assert total < 2 * limit
