"""The fast path's decision classes: one admitted and one rejected class per policy,
whose constants are class attributes (:func:`fast_decision_classes`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ratemw.decision.core import Decision, RatePolicy

__all__ = ["fast_decision_classes"]

#: encoded RateLimit values kept per fast-path policy (emptied when full)
_ENCODED_MAX = 512


def fast_decision_classes(
    policy: RatePolicy,
    wall: Callable[[], float],
    ratelimit_value: Callable[[Any, float], str] | None = None,
    retry_slack: float = 0.0,
) -> tuple[Callable[[], Decision], Callable[[], Decision]]:
    """The admitted and the rejected :class:`Decision` classes of one fast-path policy.

    What never changes for the policy (the policy itself, the wall clock; a rejection's
    status and outcome) is a class attribute, so the fast path builds a decision with
    three slot stores (``_state``, ``_now``, ``_headers``; a rejection also ``_retry``)
    and no ``__init__`` call. An admitted one's ``status`` (200) and ``_outcome``
    (``_NOTHING``) are set by whoever makes it (a reused one keeps them).
    ``ratelimit_value(state, now)`` renders the ``RateLimit`` field
    (``"name";r=REMAINING;t=RESET``) for a policy with ``headers: ietf``; without it, or
    with another header style, headers render as for any decision. A rejection's
    ``retry_after`` is its ``_retry`` plus ``retry_slack``, added when read.
    """
    base: dict[str, Any] = {
        "__slots__": (),
        "__init__": object.__init__,  # no Python-level __init__: Admitted() is a C call
        "_policy": policy,
        "_results": None,
        "_wall": staticmethod(wall),  # a plain function must not bind as a method
    }
    # An admitted decision's status and outcome are slots, set once when it is made (a
    # reused one keeps them): a middleware reads both per request, and CPython 3.11
    # specialises the read of a slot, never of a class attribute.
    admitted = {**base, "_retry": 0.0}
    rejected = {**base, "status": 429, "_outcome": policy.reject}
    if retry_slack:

        def retry_after(self: Decision) -> float:
            return self._retry + retry_slack

        rejected["retry_after"] = property(retry_after, doc=Decision.retry_after.__doc__)
    if ratelimit_value is not None and policy.rule.header_style == "ietf":
        # The RateLimit-Policy field was escaped and rendered when the policy compiled.
        policy_header = ("RateLimit-Policy", policy.policy_field)
        policy_raw = (b"ratelimit-policy", policy.policy_field.encode("latin-1"))
        value = ratelimit_value

        def admitted_headers(self: Decision) -> list[tuple[str, str]]:
            headers = self._headers
            if headers is None:
                headers = self._headers = [
                    policy_header,
                    ("RateLimit", value(self._state, self._now)),
                ]
            return headers

        # RateLimit values, encoded: the values repeat (their strings are kept rendered,
        # ratemw.limiter.fast), so a dict hit on the same string replaces an encode per request.
        encoded: dict[str, tuple[bytes, bytes]] = {}

        def admitted_encoded(self: Decision) -> list[tuple[bytes, bytes]]:
            text = admitted_headers(self)[1][1]
            field = encoded.get(text)
            if field is None:
                if len(encoded) >= _ENCODED_MAX:
                    encoded.clear()
                field = encoded[text] = (b"ratelimit", text.encode("latin-1"))
            return [policy_raw, field]

        quoted, remaining = policy.quoted, policy.algorithm.remaining

        def render_rejected(self: Decision) -> list[tuple[str, str]]:
            # Refused by this policy: its t is the wait, as Retry-After says.
            retry = str(self.retry_after_seconds)
            left = remaining(self._state, self._now)
            return [
                policy_header,
                ("RateLimit", f"{quoted};r={left};t={retry}"),
                ("Retry-After", retry),
            ]

        # An allowed request's headers are read by every adapter: one property call
        # renders them, with nothing to look up.
        admitted["headers"] = property(admitted_headers, doc=Decision.headers.__doc__)
        admitted["_header_pairs"] = admitted_headers
        admitted["encoded_headers"] = admitted_encoded
        rejected["_render"] = render_rejected
    admitted_class: Callable[[], Decision] = type("Decision", (Decision,), admitted)
    rejected_class: Callable[[], Decision] = type("Decision", (Decision,), rejected)
    return admitted_class, rejected_class
