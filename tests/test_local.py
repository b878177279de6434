from __future__ import annotations

from dataclasses import dataclass

from ratemw.algorithms.tables import KeyTable


@dataclass
class State:
    busy_until: float


class Algo:
    """A stand-in algorithm whose states rest once their time has passed."""

    def new_state(self, now: float) -> State:
        return State(now + 10)

    def at_rest(self, state: State, now: float) -> bool:
        return now >= state.busy_until


def test_get_creates_once_and_returns_the_same_state() -> None:
    table = KeyTable(Algo(), max_keys=10)
    first = table.get("a", 0.0)
    assert table.get("a", 5.0) is first
    assert table.peek("b") is None and len(table) == 1


def test_hard_bound_evicts_oldest_first() -> None:
    table = KeyTable(Algo(), max_keys=64)
    for i in range(1000):
        table.get(i, 0.0)
        assert len(table) <= 64
    assert 999 in table and 0 not in table
    assert table.evictions >= 1000 - 64


def test_idle_entries_expire_while_new_keys_arrive() -> None:
    table = KeyTable(Algo(), max_keys=10_000)
    for i in range(100):
        table.get(("old", i), 0.0)
    # Long after: the old entries are at rest; inserting new keys sweeps them.
    for i in range(200):
        table.get(("new", i), 100.0)
    assert not any(("old", i) in table for i in range(100))
    assert all(("new", i) in table for i in range(200))


def test_a_sweep_starts_at_most_every_sweep_seconds() -> None:
    table = KeyTable(Algo(), max_keys=10_000, sweep_seconds=30.0)
    table.get("a", 0.0)
    table.get("b", 0.0)
    table.get("c", 1.0)  # a walk over ["a", "b"] starts at t=1
    table.get("d", 2.0)  # walks them: both busy until t=10, both kept
    for i in range(100):  # all at rest by t=20, but the next walk waits for t=31
        table.get(("x", i), 20.0)
    assert all(k in table for k in "abcd")
    table.get(("y", 0), 31.0)  # a new walk begins...
    table.get(("y", 1), 31.0)  # ...and drops what rests, two entries per insert
    assert "a" not in table and "b" not in table
