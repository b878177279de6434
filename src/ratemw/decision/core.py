"""The :class:`Decision` and what it is made of (:class:`Outcome`, the policies' shape).

The header syntax and the meaning of ``t`` are in :mod:`ratemw.decision` (the package).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ratemw.algorithms.quota import next_quota_after
from ratemw.decision.fields import (
    PROBLEM_TYPE,
    REDUCED_CAPACITY_TYPE,
    encode_headers,
    retry_seconds,
)

if TYPE_CHECKING:
    from ratemw.algorithms.base import RateAlgorithm

__all__ = ["Decision", "Outcome", "RatePolicy", "Result"]

_TITLES = {
    403: "Forbidden",
    429: "Too Many Requests",
    503: "Service Unavailable",
}
#: (policy, its algorithm state for this key) of every enforcing policy consulted.
Result = tuple["RatePolicy", Any]


class _HeaderStyle(Protocol):
    @property
    def header_style(self) -> str: ...


class RatePolicy(Protocol):
    """What a decision reads of a compiled policy (``ratemw.rules.compile.Policy``):
    typed here, so that the decision, which the compiler imports, never imports it."""

    @property
    def limit(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def quoted(self) -> str: ...
    @property
    def policy_field(self) -> str: ...
    @property
    def algorithm(self) -> RateAlgorithm: ...
    @property
    def reject(self) -> Outcome: ...
    @property
    def rule(self) -> _HeaderStyle: ...


class Outcome:
    """The rarer parts of a decision, kept apart so a plain "allowed" stays cheap.

    An outcome without ``slots`` is immutable and may be shared by many
    decisions (the limiter prebuilds one per policy for its fast rejections).
    """

    __slots__ = ("action", "respond", "shadow", "slots", "violated", "waits")

    def __init__(
        self,
        violated: tuple[str, ...] = (),
        shadow: tuple[str, ...] = (),
        slots: list[Any] | None = None,
        action: str = "reject",
        respond: Callable[[], tuple[int, list[tuple[str, str]], bytes]] | None = None,
        waits: dict[str, float] | None = None,
    ) -> None:
        self.violated = violated
        self.shadow = shadow
        self.slots = slots
        #: ``reject``, ``challenge``, ``ban`` (penalty box) or ``brownout``
        self.action = action
        #: renders the whole answer instead of problem+json (a challenge page, the
        #: redirect after a solved challenge)
        self.respond = respond
        #: policy name -> seconds until it admits the request, for each policy that
        #: refused it (``None``: the outcome of one policy's fast path, see ``_t``)
        self.waits = waits


_NOTHING = Outcome()


class Decision:
    """Whether a request may proceed, and what to tell the client.

    ``status`` is 200 (allowed), 429 (a rate or concurrency limit, a ban, or a
    challenge), 403 (deny list), 503 (store unavailable under ``on_store_error:
    closed``, or a brownout) or 303 (the redirect after a solved challenge).
    ``violated`` names the rules that rejected; ``shadow`` the shadow rules that
    would have. Call :meth:`release` when the response is finished, so that
    concurrency slots are given back; it is idempotent.
    """

    # Every slot is set before it is read: reading an unset slot raises inside CPython,
    # and building that AttributeError costs more than a whole decision. The fast path's
    # decisions are instances of per-policy subclasses (fast_decision_classes) whose
    # constants are class attributes, so they set only what varies per request.
    __slots__ = (
        "_headers", "_now", "_outcome", "_policy", "_results", "_retry", "_state", "_wall",
        "status",
    )  # fmt: skip
    _headers: list[tuple[str, str]] | None
    _policy: RatePolicy | None  # with _state: the single result of the limiter's fast path
    _state: Any
    _outcome: Outcome
    _retry: float
    _results: list[Result] | None

    def __init__(
        self,
        status: int,
        results: list[Result] | None = None,
        now: float = 0.0,
        wall: Callable[[], float] = time.time,
        outcome: Outcome | None = None,
        retry_after: float = 0.0,
    ) -> None:
        self.status = status
        self._results = results
        self._now = now
        self._wall = wall
        self._outcome = outcome if outcome is not None else _NOTHING
        self._retry = retry_after
        self._headers = None
        self._policy = None
        self._state = None

    def __repr__(self) -> str:
        return (
            f"Decision(status={self.status}, violated={self.violated!r}, "
            f"retry_after={self.retry_after:.3f}, shadow={self.shadow!r})"
        )

    @property
    def allowed(self) -> bool:
        """True when the application should answer (anything but 200 is ours to answer)."""
        return self.status < 300

    @property
    def outcome(self) -> Outcome:
        """Violated and shadow rules, slots held, action (shared when nothing happened)."""
        return self._outcome

    @property
    def retry_after(self) -> float:
        """Seconds until the violated policies admit this request again."""
        return self._retry

    @property
    def shadow(self) -> tuple[str, ...]:
        """Shadow rules (or rules outside the rollout share) that would have rejected."""
        return self.outcome.shadow

    @property
    def action(self) -> str:
        """``reject``, ``challenge``, ``ban`` or ``brownout``: why the request was refused."""
        return self.outcome.action

    @property
    def violated(self) -> tuple[str, ...]:
        """Names of the rules that rejected, in rule order."""
        return self.outcome.violated

    @property
    def retry_after_seconds(self) -> int:
        """``Retry-After`` in whole seconds, never earlier than the real reset."""
        if self.status < 400:
            return 0
        return retry_seconds(self.retry_after)

    def _t(self, policy: RatePolicy, state: Any) -> int:
        """``t`` of ``policy`` in the ``RateLimit`` field (see the module docstring)."""
        if self.status >= 400:
            outcome = self._outcome
            waits = outcome.waits
            if waits is not None:
                wait = waits.get(policy.name)
                if wait is not None:
                    return retry_seconds(wait)
            elif outcome is policy.reject:  # refused by this policy alone (a fast path)
                return self.retry_after_seconds
        return math.ceil(next_quota_after(policy.algorithm, state, self._now))

    def _pairs(self) -> list[Result]:
        results = self._results
        if results is None:
            policy = self._policy
            return [] if policy is None else [(policy, self._state)]
        return results

    def _states(self) -> list[tuple[RatePolicy, int, float]]:
        out = []
        for policy, state in self._pairs():
            algo = policy.algorithm
            out.append(
                (policy, algo.remaining(state, self._now), algo.reset_after(state, self._now))
            )
        return out

    def _fields(self) -> list[tuple[RatePolicy, int, int]]:
        """(policy, r, t) of each policy, as the ``RateLimit`` field shows them."""
        now = self._now
        return [
            (policy, policy.algorithm.remaining(state, now), self._t(policy, state))
            for policy, state in self._pairs()
        ]

    def _tightest(self) -> tuple[RatePolicy, int, float] | None:
        states = self._states()
        if not states:
            return None
        return min(states, key=lambda s: (s[1] / max(1, s[0].limit), -s[2]))

    @property
    def limit(self) -> int | None:
        """Quota of the tightest policy (``None`` when no rate rule applied)."""
        t = self._tightest()
        return t[0].limit if t else None

    @property
    def remaining(self) -> int | None:
        """Units left in the tightest policy."""
        t = self._tightest()
        return t[1] if t else None

    @property
    def reset_after(self) -> float | None:
        """Seconds until the tightest policy's quota is restored."""
        t = self._tightest()
        return t[2] if t else None

    def _header_pairs(self) -> list[tuple[str, str]]:
        # `headers` as a method, which the middlewares call: a method call runs inline in
        # the caller's interpreter loop, where a property getter is called from C.
        headers = self._headers
        if headers is None:
            headers = self._headers = self._render()
        return headers

    headers = property(_header_pairs, doc="Response headers as (name, value) pairs, rendered once.")

    def encoded_headers(self) -> list[tuple[bytes, bytes]]:
        """:attr:`headers` as ASGI wants them: lower-case names, latin-1 bytes."""
        return encode_headers(self.headers)

    def _render(self) -> list[tuple[str, str]]:
        policy = self._policy
        if policy is not None and policy.rule.header_style == "ietf":
            # The fast path's single policy: its RateLimit-Policy field is precomputed.
            state = self._state
            left = policy.algorithm.remaining(state, self._now)
            out = [
                ("RateLimit-Policy", policy.policy_field),
                ("RateLimit", f"{policy.quoted};r={left};t={self._t(policy, state)}"),
            ]
            if self.status >= 400:
                out.append(("Retry-After", str(self.retry_after_seconds)))
            return out
        out = []
        ietf = [f for f in self._fields() if f[0].rule.header_style in ("ietf", "both")]
        if ietf:
            out.append(
                (
                    "RateLimit-Policy",
                    ", ".join(p.policy_field for p, _, _ in ietf),
                )
            )
            out.append(("RateLimit", ", ".join(f"{p.quoted};r={r};t={t}" for p, r, t in ietf)))
        legacy = [s for s in self._states() if s[0].rule.header_style in ("legacy", "both")]
        if legacy:
            p, r, t = min(legacy, key=lambda s: (s[1] / max(1, s[0].limit), -s[2]))
            out.append(("X-RateLimit-Limit", str(p.limit)))
            out.append(("X-RateLimit-Remaining", str(r)))
            out.append(("X-RateLimit-Reset", str(math.ceil(self._wall() + t))))
        if self.status >= 400 and self.status != 403:
            out.append(("Retry-After", str(self.retry_after_seconds)))
        return out

    def problem(self) -> dict[str, object]:
        """An RFC 9457 problem object describing a rejection."""
        title = _TITLES.get(self.status, "Error")
        action = self.action
        kind = "about:blank"
        if action == "brownout":
            kind = REDUCED_CAPACITY_TYPE
        elif self.status == 429:
            kind = PROBLEM_TYPE
        body: dict[str, object] = {"type": kind, "title": title, "status": self.status}
        names = self.violated
        if names:
            what = {
                "ban": "Temporarily banned",
                "brownout": "Capacity temporarily reduced",
            }.get(action, "Rate limit exceeded")
            body["detail"] = f"{what}: {', '.join(names)}."
            body["violated-policies"] = list(names)
        if self.status >= 400 and self.status != 403:
            body["retry-after"] = self.retry_after_seconds
        return body

    def body(self) -> bytes:
        """The ``application/problem+json`` body of a rejection."""
        return json.dumps(self.problem(), separators=(",", ":")).encode()

    def response(self) -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body of the answer to a rejected request.

        The body is ``application/problem+json`` (RFC 9457) naming the violated
        rules; the headers include ``Retry-After`` and the rate-limit fields.
        """
        respond = self.outcome.respond
        if respond is not None:
            return respond()
        body = self.body()
        headers = [
            ("Content-Type", "application/problem+json"),
            ("Content-Length", str(len(body))),
            *self.headers,
        ]
        return self.status, headers, body

    def release(self) -> None:
        """Give back the concurrency slots this request holds (idempotent)."""
        outcome = self.outcome
        if outcome.slots:
            slots, outcome.slots = outcome.slots, None
            for slot in slots:
                slot.release()
