"""TokenBucket and GCRA: explicit-time cases and hypothesis properties."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ratemw.algorithms import (
    ALGORITHM_FACTORY,
    ALGORITHM_NAMES,
    GCRA,
    TIME_SLACK_SECONDS,
    FixedWindow,
    RateAlgorithm,
    SlidingWindow,
    TokenBucket,
    build_algorithm,
)

BUCKETS = [TokenBucket, GCRA]
SLACK = TIME_SLACK_SECONDS


@pytest.fixture(params=BUCKETS, ids=lambda c: c.__name__)
def bucket_cls(request: pytest.FixtureRequest) -> type[TokenBucket] | type[GCRA]:
    return request.param  # type: ignore[no-any-return]


def test_protocol_conformance() -> None:
    # Checked by mypy: every rate algorithm is a RateAlgorithm.
    algs: list[RateAlgorithm] = [
        TokenBucket(1.0, 1),
        GCRA(1.0, 1),
        FixedWindow(1, 1.0),
        SlidingWindow(1, 1.0),
    ]
    assert all(alg.new_state(0.0).denied_until < 0 for alg in algs)


def test_burst_then_refill(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(2.0, 3)  # 2 tokens/s, capacity 3
    state = alg.new_state(100.0)
    assert alg.remaining(state, 100.0) == 3
    assert alg.at_rest(state, 100.0)
    assert [alg.take(state, 100.0, 1) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert alg.remaining(state, 100.0) == 0
    assert alg.reset_after(state, 100.0) == pytest.approx(1.5)
    wait = alg.take(state, 100.0, 1)
    assert wait == pytest.approx(0.5 + SLACK)
    assert state.denied_until == pytest.approx(100.5 + SLACK)
    assert alg.remaining(state, 100.25) == 0
    assert alg.take(state, 100.5 + SLACK, 1) == 0.0
    assert alg.remaining(state, 101.5) == 2
    assert alg.remaining(state, 110.0) == 3
    assert alg.reset_after(state, 110.0) == 0.0
    assert alg.at_rest(state, 110.0)


def test_deny_cache_answers_without_recomputing(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(1.0, 2)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.0, 2) == 0.0
    assert alg.take(state, 0.0, 2) == pytest.approx(2.0 + SLACK)
    # Cached: the wait of the refusal that set the cache, even for a smaller cost.
    assert alg.take(state, 1.5, 1) == pytest.approx(0.5 + SLACK)
    assert not alg.at_rest(state, 1.9)
    assert alg.take(state, 2.0 + SLACK, 1) == 0.0


def test_cost_above_burst_is_never_granted_and_not_cached(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(1.0, 2)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.0, 3) == math.inf
    assert state.denied_until == -math.inf
    assert alg.take(state, 0.0, 2) == 0.0


def test_give_refunds_and_clears_deny_cache(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(1.0, 5)
    state = alg.new_state(0.0)
    assert alg.take(state, 0.0, 5) == 0.0
    assert alg.take(state, 0.0, 1) > 0
    alg.give(state, 0.0, 2)
    assert state.denied_until == -math.inf
    assert alg.remaining(state, 0.0) == 2
    alg.give(state, 0.0, 100)
    assert alg.remaining(state, 0.0) == 5
    assert alg.at_rest(state, 0.0)
    assert alg.take(state, 0.0, 5) == 0.0
    assert alg.take(state, 0.0, 1) > 0


def test_fractional_rate(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(5 / 60, 5)  # 5 per minute
    state = alg.new_state(0.0)
    for _ in range(5):
        assert alg.take(state, 0.0, 1) == 0.0
    assert alg.take(state, 0.0, 1) == pytest.approx(12.0 + SLACK)
    assert alg.take(state, 12.0 + SLACK, 1) == 0.0


def test_header_fields_default_and_explicit(bucket_cls: type[TokenBucket]) -> None:
    alg = bucket_cls(10.0, 20)
    assert (alg.limit, alg.window_seconds) == (20, 2.0)
    alg = bucket_cls(10.0, 20, 60.0, 600)
    assert (alg.limit, alg.window_seconds) == (600, 60.0)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (math.inf, 1), (1.0, 0)])
def test_invalid_parameters(bucket_cls: type[TokenBucket], rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        bucket_cls(rate, burst)


def test_build_algorithm() -> None:
    tb = build_algorithm("token_bucket", 60, 60.0, None)
    assert isinstance(tb, TokenBucket)
    assert (tb.rate_per_second, tb.burst, tb.limit, tb.window_seconds) == (1.0, 60, 60, 60.0)
    g = build_algorithm("gcra", 10, 1.0, 3)
    assert isinstance(g, GCRA)
    assert (g.rate_per_second, g.burst, g.limit) == (10.0, 3, 3)
    fw = build_algorithm("fixed_window", 100, 3600.0, 7)
    assert isinstance(fw, FixedWindow)
    assert (fw.limit, fw.window_seconds) == (100, 3600.0)
    sw = build_algorithm("sliding_window", 5, 60.0, None)
    assert isinstance(sw, SlidingWindow)
    assert ALGORITHM_FACTORY is build_algorithm
    assert frozenset({"token_bucket", "gcra", "fixed_window", "sliding_window"}) == ALGORITHM_NAMES
    with pytest.raises(ValueError, match="unknown algorithm"):
        build_algorithm("leaky", 1, 1.0, None)
    for name in sorted(ALGORITHM_NAMES):
        with pytest.raises(ValueError):
            build_algorithm(name, 0, 1.0, None)
        with pytest.raises(ValueError):
            build_algorithm(name, 1, 0.0, None)


# Properties ---------------------------------------------------------------------------

rates = st.floats(min_value=0.1, max_value=100.0)
bursts = st.integers(min_value=1, max_value=20)
starts = st.floats(min_value=0.0, max_value=1e6)


@st.composite
def bucket_runs(draw: st.DrawFn) -> tuple[float, int, float, list[tuple[float, int]]]:
    rate = draw(rates)
    burst = draw(bursts)
    start = draw(starts)
    # Steps in units of one token's refill time, so runs both drain and refill.
    steps = draw(
        st.lists(
            st.tuples(
                st.floats(min_value=0.0, max_value=3.0),
                st.integers(min_value=1, max_value=burst + 1),
            ),
            max_size=60,
        )
    )
    return rate, burst, start, [(k / rate, cost) for k, cost in steps]


@settings(deadline=None, max_examples=300)
@given(cls=st.sampled_from(BUCKETS), run=bucket_runs())
def test_admits_at_most_burst_plus_rate_times_interval(
    cls: type[TokenBucket], run: tuple[float, int, float, list[tuple[float, int]]]
) -> None:
    rate, burst, now, steps = run
    alg = cls(rate, burst)
    state = alg.new_state(now)
    admitted: list[tuple[float, int]] = []
    for dt, cost in steps:
        now += dt
        if alg.take(state, now, cost) == 0.0:
            admitted.append((now, cost))
    for i, (t_i, _) in enumerate(admitted):
        total = 0
        for t_j, cost in admitted[i:]:
            total += cost
            assert total <= burst + rate * (t_j - t_i) + 1e-6


@settings(deadline=None, max_examples=300)
@given(cls=st.sampled_from(BUCKETS), run=bucket_runs())
def test_refusal_wait_is_exact(
    cls: type[TokenBucket], run: tuple[float, int, float, list[tuple[float, int]]]
) -> None:
    rate, burst, now, steps = run
    alg = cls(rate, burst)
    state = alg.new_state(now)
    for dt, cost in steps:
        now += dt
        cached = now < state.denied_until
        before = copy.copy(state)
        wait = alg.take(state, now, cost)
        if wait == 0.0:
            continue
        if cached:
            assert wait == state.denied_until - now + SLACK
            continue
        if cost > burst:
            assert wait == math.inf
            continue
        assert 0.0 < wait < math.inf
        # The deny cache ends at the exact time; the caller is told SLACK later.
        assert state.denied_until == pytest.approx(now + wait - SLACK, abs=1e-9)
        exact = copy.copy(state)
        assert alg.take(exact, state.denied_until, cost) == 0.0
        # Not debited: the state is unchanged apart from the deny cache.
        before.denied_until = state.denied_until
        assert repr(before) == repr(state)
        retry = copy.copy(state)
        assert alg.take(retry, now + wait, cost) == 0.0
        if wait > 1e-3:
            early = copy.copy(state)
            early.denied_until = -math.inf
            assert alg.take(early, now + wait - 1e-4, cost) > 0.0


@settings(deadline=None, max_examples=300)
@given(
    cls=st.sampled_from(BUCKETS),
    run=bucket_runs(),
    gives=st.lists(st.integers(min_value=0, max_value=30), min_size=60, max_size=60),
)
def test_give_never_exceeds_burst(
    cls: type[TokenBucket],
    run: tuple[float, int, float, list[tuple[float, int]]],
    gives: list[int],
) -> None:
    rate, burst, now, steps = run
    alg = cls(rate, burst)
    state = alg.new_state(now)
    for (dt, cost), refund in zip(steps, gives, strict=False):
        now += dt
        alg.take(state, now, cost)
        alg.give(state, now, refund)
        assert state.denied_until == -math.inf
        assert 0 <= alg.remaining(state, now) <= burst
        assert alg.reset_after(state, now) >= 0.0
        full = copy.copy(state)
        if alg.take(full, now, burst) == 0.0:
            assert alg.take(full, now, 1) > 0.0


# Dyadic rates and times are exact in binary floating point, so both encodings must
# return bit-identical results.
@settings(deadline=None, max_examples=300)
@given(
    rate=st.sampled_from([0.25, 0.5, 1.0, 2.0, 4.0, 8.0]),
    burst=bursts,
    start=st.integers(min_value=0, max_value=2**20),
    ops=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=256),
            st.integers(min_value=1, max_value=21),
            st.booleans(),
        ),
        max_size=60,
    ),
)
def test_gcra_matches_token_bucket(
    rate: float, burst: int, start: int, ops: list[tuple[int, int, bool]]
) -> None:
    now = start / 64
    tb, gcra = TokenBucket(rate, burst), GCRA(rate, burst)
    s1, s2 = tb.new_state(now), gcra.new_state(now)
    for step, cost, refund in ops:
        now += step / 64
        if refund:
            tb.give(s1, now, cost)
            gcra.give(s2, now, cost)
        else:
            assert tb.take(s1, now, cost) == gcra.take(s2, now, cost)
        assert tb.remaining(s1, now) == gcra.remaining(s2, now)
        assert tb.reset_after(s1, now) == gcra.reset_after(s2, now)
        assert tb.at_rest(s1, now) == gcra.at_rest(s2, now)
