"""Lease accounting: tokens a store granted to this process, spent locally (no I/O), and
each key's lease state (:class:`LeaseEntry`).

See LEASES.md §6-7. A lease is a count of tokens with a deadline, never "allow
everything for a while"; tokens left when it ends go back to the store.
"""

from __future__ import annotations

import math
import threading

from ratemw.algorithms.token_bucket import BucketState, TokenBucket

__all__ = ["LeaseAccount", "LeaseEntry", "TakeAnswer", "local_share"]

#: (tokens granted, wait seconds if none, tokens left in the store, seconds to full,
#:  seconds the granted tokens may be spent)
TakeAnswer = tuple[int, float, float, float, float]

_WINDOW = 1.0  # seconds over which the admit rate is measured
_MIN_WINDOW = 0.05  # a key seen twice within 50 ms is busy: do not divide by ~0

#: Refresh when fewer tokens than this share of the last grant remain (LEASES.md §6).
REFRESH_TOKEN_FRACTION = 0.1
#: Refresh during this last share of a lease's lifetime, so a busy key renews before
#: its tokens expire unspent.
REFRESH_TIME_FRACTION = 0.2


class LeaseAccount:
    """Tokens held by one process for one key, usable until ``deadline``.

    Invariant (LEASES.md §14): spent <= granted - returned. Merging a new grant into
    held tokens extends their deadline; held tokens stay bounded by the lease cap the
    caller applies when asking for a grant.
    """

    __slots__ = ("deadline", "due", "last_grant", "pace", "refresh_at", "tokens")

    def __init__(self) -> None:
        self.tokens: int = 0
        self.deadline: float = float("-inf")
        self.last_grant: int = 0
        self.refresh_at: float = float("-inf")
        # A reservation (LEASES.md §5 "take, reserve") is spent paced: the next token
        # falls due at ``due`` and each one after it ``pace`` seconds later.
        self.due: float = float("-inf")
        self.pace: float = 0.0

    def __repr__(self) -> str:
        return f"LeaseAccount(tokens={self.tokens!r}, deadline={self.deadline!r})"

    def grant(
        self, n: int, deadline: float, now: float, due: float = float("-inf"), pace: float = 0.0
    ) -> None:
        """Add ``n`` tokens granted at ``now`` (monotonic seconds), usable until ``deadline``.

        A reservation passes ``due`` (when its first token may be spent) and ``pace``
        (seconds between tokens). Tokens of an expired lease must have been returned
        (``expire()``) before; they are dropped here rather than revived.
        """
        if now >= self.deadline:
            self.tokens = 0
        self.tokens += n
        self.deadline = deadline
        self.last_grant = n
        self.refresh_at = deadline - (deadline - now) * REFRESH_TIME_FRACTION
        if pace:
            self.due, self.pace = max(due, self.due), pace

    def spend(self, cost: int, now: float) -> bool:
        """Spend ``cost`` tokens; False (nothing spent) if expired, too few, or not due."""
        if now >= self.deadline or self.tokens < cost or now < self.due:
            return False
        self.tokens -= cost
        if self.pace:
            self.due += self.pace * cost
        return True

    def due_in(self, cost: int, now: float) -> float:
        """Seconds until a live reservation's next ``cost`` tokens fall due (0: not paced)."""
        if now >= self.deadline or self.tokens < cost or now >= self.due:
            return 0.0
        return self.due - now

    def refund(self, cost: int) -> None:
        """Give back ``cost`` tokens spent for a request that a later rule denied."""
        self.tokens += cost

    def leftover(self, now: float) -> int:
        """Tokens to return to the store now: all held tokens once the lease expired."""
        return self.tokens if now >= self.deadline else 0

    def needs_refresh(self, now: float) -> bool:
        """True when the lease is gone, nearly spent, or in the last part of its life."""
        return now >= self.refresh_at or self.tokens < self.last_grant * REFRESH_TOKEN_FRACTION

    def expire(self) -> int:
        """End the lease now; return the tokens to give back (also used after fork,
        where the child discards the result)."""
        tokens = self.tokens
        self.tokens = 0
        self.deadline = float("-inf")
        self.refresh_at = float("-inf")
        self.due, self.pace = float("-inf"), 0.0
        return tokens


class LeaseEntry:
    """One key's share of a global limit in this process."""

    __slots__ = (
        "account",
        "admits",
        "calling",
        "debt",
        "denied_until",
        "rate",
        "rate_at",
        "remaining",
        "reset_at",
        "retry_at",
        "share",
        "store_key",
        "window",
    )  # fmt: skip

    def __init__(self, now: float) -> None:
        self.account = LeaseAccount()
        # Admit rate: tokens admitted since ``rate_at``; ``rate`` is the last whole
        # window's rate. Counting is one addition per admit; the division happens only
        # when a lease is sized (estimate).
        self.admits = 0
        self.rate = 0.0
        self.rate_at = now
        self.denied_until = -math.inf
        # When the store said the denied request could pass: the deny cache may end
        # sooner (a lease lifetime at most), but what a client is told to wait is this.
        self.retry_at = -math.inf
        self.calling = threading.Lock()  # at most one store call per key in flight
        self.share: BucketState | None = None  # the local share, during an outage
        self.debt = 0  # admitted while the store was unreachable, not yet debited
        self.remaining = 0.0  # tokens the store reported left after our last call
        self.reset_at = now  # when the store's bucket will be full again
        self.store_key = ""
        self.window = -1.0  # window index the lease belongs to (window mode)

    def note_admit(self, cost: int, now: float) -> None:
        self.admits += cost

    def estimate(self, now: float) -> float:
        """Recent admitted tokens per second (a window of about one second)."""
        elapsed = now - self.rate_at
        current = self.admits / max(elapsed, _MIN_WINDOW)
        if elapsed >= _WINDOW:
            self.rate, self.admits, self.rate_at = current, 0, now
            return current
        return max(current, self.rate)


def local_share(rate_per_second: float, burst: int, processes: int) -> TokenBucket:
    """The per-process share of a limit while the store is unreachable (LEASES.md §9)."""
    p = max(1, processes)
    return TokenBucket(rate_per_second / p, max(1, burst // p))
