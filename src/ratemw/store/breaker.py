"""Circuit breaker for one Redis node (LEASES.md §9). Pure: the clock is injected.

Opens after 3 consecutive failures, or when more than half of at least 5 calls within
the last second failed. While open, calls are refused without I/O; after a jittered,
exponentially growing backoff (0.25 s to 8 s) one probe is let through at a time, and
its success closes the breaker.

A breaker with a ``name`` (the store's URL, redacted) logs once when it first opens and
once when it closes again, on logger ``ratemw.store``: an outage is two lines, however
many requests it lasts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from ratemw.redact import redact

__all__ = ["BreakerState", "CircuitBreaker", "store_breaker"]

BreakerState = Literal["closed", "open", "half_open"]

log = logging.getLogger("ratemw.store")


class CircuitBreaker:
    """Thread-safe circuit breaker.

    ``clock`` returns monotonic seconds; ``jitter`` returns a float in [0, 1) (both
    injectable for tests). A probe that never reports back stops blocking other probes
    after ``probe_timeout_seconds``. ``name`` (text safe to log: a redacted URL) makes
    the breaker log its outages (see the module docstring).
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] | None = None,
        consecutive_failures: int = 3,
        failure_ratio: float = 0.5,
        ratio_window_seconds: float = 1.0,
        ratio_min_calls: int = 5,
        base_backoff_seconds: float = 0.25,
        max_backoff_seconds: float = 8.0,
        probe_timeout_seconds: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.name = name
        self._clock = clock
        # Our own generator: the global one belongs to the application.
        self._jitter = jitter if jitter is not None else random.Random().random
        self._max_consecutive = consecutive_failures
        self._ratio = failure_ratio
        self._window = ratio_window_seconds
        self._min_calls = ratio_min_calls
        self._base = base_backoff_seconds
        self._cap = max_backoff_seconds
        self._probe_timeout = probe_timeout_seconds
        self._lock = threading.Lock()
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) in the window
        self._consecutive = 0
        self._opens = 0  # openings since the breaker last closed: drives the backoff
        self._open_until = 0.0
        self._probe_since: float | None = None
        self._state: BreakerState = "closed"

    @property
    def state(self) -> BreakerState:
        """``closed``, ``open`` (refusing) or ``half_open`` (a probe may run)."""
        with self._lock:
            if self._state == "open" and self._clock() >= self._open_until:
                return "half_open"
            return self._state

    @property
    def retry_at(self) -> float:
        """Clock time at which the next probe is allowed (meaningful while open)."""
        return self._open_until

    @property
    def openings(self) -> int:
        """Times the breaker opened since it last closed."""
        return self._opens

    def allow(self) -> bool:
        """True if a call may go ahead now; the caller must then report its outcome."""
        with self._lock:
            if self._state == "closed":
                return True
            now = self._clock()
            if now < self._open_until:
                return False
            if self._probe_since is not None and now - self._probe_since < self._probe_timeout:
                return False  # one probe at a time
            self._state = "half_open"
            self._probe_since = now
            return True

    def record_success(self) -> None:
        with self._lock:
            self._consecutive = 0
            recovered = self._state != "closed"
            if recovered:
                self._close()
            self._note(failed=False)
        if recovered and self.name is not None:
            log.warning(
                "ratemw: Redis at %s is reachable again (circuit breaker closed)", self.name
            )

    def record_failure(self) -> None:
        with self._lock:
            now = self._clock()
            self._consecutive += 1
            if self._state != "closed":
                self._open(now)  # the probe failed: the outage goes on, already logged
                return
            self._note(failed=True)
            failures = sum(1 for _, failed in self._calls if failed)
            opened = self._consecutive >= self._max_consecutive or (
                len(self._calls) >= self._min_calls and failures > self._ratio * len(self._calls)
            )
            if opened:
                self._open(now)
        if opened and self.name is not None:
            log.warning(
                "ratemw: Redis at %s is unreachable (circuit breaker open): limits follow "
                "each rule's on_store_error until it is back; the breaker's state is on "
                "/metrics as ratemw_breaker_state (2 open, 1 half-open, 0 closed)",
                self.name,
            )

    def _note(self, *, failed: bool) -> None:
        now = self._clock()
        self._calls.append((now, failed))
        while self._calls and self._calls[0][0] <= now - self._window:
            self._calls.popleft()

    def _open(self, now: float) -> None:
        backoff = min(self._cap, self._base * 2**self._opens)
        self._opens += 1
        # +-20 % jitter, so processes that failed together do not probe together
        self._open_until = now + backoff * (0.8 + 0.4 * self._jitter())
        self._state = "open"
        self._probe_since = None
        self._calls.clear()

    def _close(self) -> None:
        self._state = "closed"
        self._opens = 0
        self._probe_since = None
        self._calls.clear()


def store_breaker(url: str | None = None) -> CircuitBreaker:
    """The breaker of a limiter's store: LEASES.md §9 backs off up to 8 s, but leasing
    must resume within 1 s of the store returning (docs/global.md), and one probe a
    second per node costs nothing. With the store's ``url`` it logs its outages, naming
    the URL redacted (:func:`ratemw.redact.redact`)."""
    return CircuitBreaker(max_backoff_seconds=1.0, name=None if url is None else redact(url))
