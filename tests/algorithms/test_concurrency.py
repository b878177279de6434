"""ConcurrencyLimit and Slot."""

from __future__ import annotations

import threading

import pytest

from ratemw.algorithms import ConcurrencyLimit, Slot


def test_acquire_up_to_the_limit() -> None:
    alg = ConcurrencyLimit(2)
    state = alg.new_state(0.0)
    assert alg.at_rest(state, 0.0)
    assert alg.remaining(state) == 2
    assert alg.acquire(state)
    assert alg.acquire(state)
    assert not alg.acquire(state)
    assert state.inflight == 2
    assert alg.remaining(state) == 0
    assert not alg.at_rest(state, 0.0)


def test_slot_release_is_idempotent() -> None:
    alg = ConcurrencyLimit(1)
    state = alg.new_state()
    assert alg.acquire(state)
    slot = Slot(state)
    assert "released=False" in repr(slot)
    assert slot.release()
    assert not slot.release()
    assert not slot.release()
    assert slot.released
    assert state.inflight == 0
    assert alg.at_rest(state)
    assert alg.acquire(state)


def test_slot_release_holds_the_given_lock() -> None:
    class RecordingLock:
        def __init__(self) -> None:
            self.entered = 0

        def __enter__(self) -> None:
            self.entered += 1

        def __exit__(self, *exc: object) -> None:
            return None

    alg = ConcurrencyLimit(3)
    state = alg.new_state()
    lock = RecordingLock()
    assert alg.acquire(state)
    slot = Slot(state, lock)
    slot.release()
    slot.release()
    assert lock.entered == 1
    assert state.inflight == 0


def test_racing_releases_decrement_once() -> None:
    alg = ConcurrencyLimit(1000)
    state = alg.new_state()
    lock = threading.Lock()
    slots = []
    for _ in range(200):
        assert alg.acquire(state)
        slots.append(Slot(state, lock))
    barrier = threading.Barrier(8)
    wins: list[int] = []

    def release_all() -> None:
        barrier.wait()
        wins.append(sum(slot.release() for slot in slots))

    threads = [threading.Thread(target=release_all) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(wins) == 200
    assert state.inflight == 0


def test_invalid_limit() -> None:
    with pytest.raises(ValueError):
        ConcurrencyLimit(0)
