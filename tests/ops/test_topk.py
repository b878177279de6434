"""SpaceSaving: small exact cases, a skewed stream against exact counts, properties."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw.ops.topk import SpaceSaving


def _check_guarantees(sketch: SpaceSaving, exact: Counter[str]) -> None:
    n = sum(exact.values())
    assert sketch.total == n
    rows = sketch.top(len(sketch))
    assert len(rows) == len(sketch) <= sketch.k
    assert sum(count for _, count, _ in rows) == n  # Space-Saving counters sum to N
    for item, count, error in rows:
        assert 0 <= error <= count
        assert count - error <= exact[item] <= count, item
    tracked = {item for item, _, _ in rows}
    for item, true in exact.items():
        if true > n / sketch.k:
            assert item in tracked, (item, true)


def test_k_must_be_positive() -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        SpaceSaving(0)
    assert SpaceSaving().k == 20


def test_count_must_be_positive() -> None:
    sketch = SpaceSaving(3)
    with pytest.raises(ValueError, match="count must be at least 1"):
        sketch.add("a", 0)
    assert len(sketch) == 0 and sketch.total == 0


def test_exact_while_under_capacity() -> None:
    sketch = SpaceSaving(3)
    sketch.update(["a", "b", "a", "c", "a", "b"])
    assert sketch.top() == [("a", 3, 0), ("b", 2, 0), ("c", 1, 0)]
    assert len(sketch) == 3
    assert sketch.total == 6


def test_k1_keeps_the_latest_item_with_the_whole_count() -> None:
    sketch = SpaceSaving(1)
    sketch.update(["a", "a", "b"])
    assert sketch.top() == [("b", 3, 2)]
    sketch.add("b")
    assert sketch.top() == [("b", 4, 2)]


def test_count_greater_than_one() -> None:
    sketch = SpaceSaving(2)
    sketch.add("a", 5)
    sketch.add("b", 2)
    sketch.add("a", 3)
    sketch.add("c", 4)  # evicts b (2): c = 2 + 4, error 2
    assert sketch.top() == [("a", 8, 0), ("c", 6, 2)]
    assert sketch.total == 14


def test_ties_sorted_by_item() -> None:
    sketch = SpaceSaving(5)
    sketch.update(["d", "b", "c", "a", "b", "c"])
    assert sketch.top() == [("b", 2, 0), ("c", 2, 0), ("a", 1, 0), ("d", 1, 0)]


def test_eviction_uses_current_counts_not_stale_heap_entries() -> None:
    sketch = SpaceSaving(2)
    sketch.update(["a", "b"])
    sketch.add("a", 5)  # a's heap entry still says 1
    sketch.add("c")  # must evict b (1), not a (6)
    assert sketch.top() == [("a", 6, 0), ("c", 2, 1)]
    sketch.add("d")  # now c (2) is the smallest
    assert sketch.top() == [("a", 6, 0), ("d", 3, 2)]


def test_top_n() -> None:
    sketch = SpaceSaving(4)
    sketch.update("aaabbc")
    assert sketch.top(2) == [("a", 3, 0), ("b", 2, 0)]
    assert sketch.top(0) == []
    assert sketch.top(10) == sketch.top()
    with pytest.raises(ValueError, match="must not be negative"):
        sketch.top(-1)


def test_drain_returns_everything_and_resets() -> None:
    sketch = SpaceSaving(2)
    sketch.update(["x", "y", "x", "z"])
    assert sketch.drain() == [("x", 2), ("z", 2)]
    assert len(sketch) == 0
    assert sketch.total == 0
    assert sketch.top() == []
    assert sketch.drain() == []
    # the next interval starts from scratch: no inherited error
    sketch.update(["y", "y"])
    assert sketch.top() == [("y", 2, 0)]


def test_clear() -> None:
    sketch = SpaceSaving(2)
    sketch.update("abcabc")
    sketch.clear()
    assert len(sketch) == 0 and sketch.total == 0
    sketch.add("q")
    assert sketch.top() == [("q", 1, 0)]
    assert "tracked=1" in repr(sketch)


def _zipf_stream(rng: random.Random, n: int, distinct: int, s: float) -> list[str]:
    values = [f"ip-{i:04d}" for i in range(distinct)]
    weights = [1.0 / (rank + 1) ** s for rank in range(distinct)]
    return rng.choices(values, weights=weights, k=n)


def _assert_top_in_order(sketch: SpaceSaving, exact: Counter[str], n: int) -> None:
    rows = sketch.top(n + 1)
    assert [item for item, _, _ in rows[:n]] == [item for item, _ in exact.most_common(n)]
    # ... and the sketch can prove it: each lower bound beats the next upper bound
    for (_, count, error), (_, next_count, _) in itertools.pairwise(rows):
        assert count - error >= next_count


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_skewed_stream_against_exact_counts(seed: int) -> None:
    stream = _zipf_stream(random.Random(seed), 50_000, 2_000, 1.3)
    exact = Counter(stream)
    sketch = SpaceSaving(20)
    sketch.update(stream)

    _check_guarantees(sketch, exact)
    _assert_top_in_order(sketch, exact, 5)
    heavy = {item for item, count in exact.items() if count > len(stream) / 20}
    assert len(heavy) >= 3  # skewed enough for the N/k check to mean something
    assert heavy <= {item for item, _, _ in sketch.top()}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_flatter_stream_bounds_hold_and_more_counters_rank_it(seed: int) -> None:
    # At Zipf 1.1 the 5th value is under 3% of traffic, below the ~N/k noise floor of
    # 20 counters: the bounds and the N/k promise hold, the ranking needs more counters.
    stream = _zipf_stream(random.Random(seed), 50_000, 2_000, 1.1)
    exact = Counter(stream)
    small, large = SpaceSaving(20), SpaceSaving(50)
    small.update(stream)
    large.update(stream)
    _check_guarantees(small, exact)
    _check_guarantees(large, exact)
    _assert_top_in_order(large, exact, 5)


def test_skewed_stream_in_weighted_batches() -> None:
    # What a per-interval shipper sees: (item, count) deltas rather than single hits.
    rng = random.Random(7)
    exact: Counter[str] = Counter()
    sketch = SpaceSaving(20)
    for _ in range(200):
        batch = Counter(_zipf_stream(rng, 250, 2_000, 1.3))
        exact.update(batch)
        for item, count in batch.items():
            sketch.add(item, count)
    _check_guarantees(sketch, exact)
    _assert_top_in_order(sketch, exact, 5)


@given(
    k=st.integers(min_value=1, max_value=6),
    events=st.lists(
        st.tuples(st.sampled_from("abcdefghij"), st.integers(min_value=1, max_value=5)),
        max_size=200,
    ),
)
def test_bounds_hold_for_any_stream(k: int, events: list[tuple[str, int]]) -> None:
    sketch = SpaceSaving(k)
    exact: Counter[str] = Counter()
    for item, count in events:
        sketch.add(item, count)
        exact[item] += count
    _check_guarantees(sketch, exact)
