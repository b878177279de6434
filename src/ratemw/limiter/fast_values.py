"""The ``RateLimit`` field of a fast-path policy for a state at a time, kept rendered where
its values repeat (``"name";r=REMAINING;t=SECONDS``)."""

from __future__ import annotations

from collections.abc import Callable
from math import ceil
from typing import TYPE_CHECKING, Any

from ratemw.algorithms.token_bucket import TokenBucket
from ratemw.decision import next_quota_after

if TYPE_CHECKING:
    from ratemw.rules.compile import Policy

__all__ = ["ratelimit_value"]

#: a policy whose ``RateLimit`` values can take at most this many (remaining, reset)
#: pairs keeps them rendered (see _ratelimit_value)
_RENDERED_MAX = 512


def _next_token(tokens: float, burst: float, inv_rate: float) -> int:
    """``t`` of a token bucket holding ``tokens``: seconds to the next whole token, 0 full
    (``decision.next_quota_after``, inline)."""
    if tokens >= burst:
        return 0
    short = burst - tokens
    part = short - int(short)
    return ceil((part if part > 1e-9 else 1.0) * inv_rate)


def ratelimit_value(policy: Policy, algo: Any) -> Callable[[Any, float], str]:
    """``RateLimit`` field of ``policy`` for a state at a time: ``"name";r=N;t=SECONDS``."""
    quoted = policy.quoted  # escaped when the policy compiled (decision.sf_string)
    if type(algo) is TokenBucket:
        rate, burst, inv_rate = algo._rate, algo._burst, algo._inv_rate
        # Formatting two ints costs a third of a decision. The commonest answer, a full
        # bucket (a client well under its limit) that one request just took from, is
        # rendered now: it costs a float comparison.
        after_one = burst - float(policy.cost)
        left_one = int(after_one) if after_one > 0 else 0
        text_one = f"{quoted};r={left_one};t={_next_token(after_one, burst, inv_rate)}"
        # Others are kept rendered, by (remaining, reset), when the policy has few such
        # pairs (about inv_rate + 1 resets per remaining value: 160 for 100/minute), so
        # that they repeat; a miss costs as much as the formatting, so a policy with many
        # (a quota of millions being drained) formats every time.
        rendered: dict[tuple[int, int], str] = {}
        lookup = rendered.get
        keep = (burst + 1.0) * (inv_rate + 1.0) <= _RENDERED_MAX

        def bucket_value(state: Any, now: float) -> str:
            # TokenBucket.remaining and decision.next_quota_after, inline.
            tokens = state.tokens + (now - state.updated_at) * rate
            if tokens > burst:
                tokens = burst
            if tokens == after_one:
                return text_one
            left = int(tokens) if tokens > 0 else 0
            if tokens < burst:  # _next_token, inline
                short = burst - tokens
                part = short - int(short)
                reset = ceil((part if part > 1e-9 else 1.0) * inv_rate)
            else:
                reset = 0
            if not keep:
                return f"{quoted};r={left};t={reset}"
            text = lookup((left, reset))
            if text is None:
                text = rendered[left, reset] = f"{quoted};r={left};t={reset}"
                if len(rendered) > 2 * _RENDERED_MAX:  # a bound, should the estimate be off
                    rendered.clear()
            return text

        return bucket_value
    remaining = algo.remaining

    def value(state: Any, now: float) -> str:
        return f"{quoted};r={remaining(state, now)};t={ceil(next_quota_after(algo, state, now))}"

    return value
