"""The answer of ``Limiter.decide``, with its response headers rendered lazily.

Header syntax follows draft-ietf-httpapi-ratelimit-headers-10: the
``RateLimit-Policy`` field lists each policy as ``"name";q=QUOTA;w=WINDOW``
and the ``RateLimit`` field its state as ``"name";r=REMAINING;t=SECONDS``.
``t`` has the meaning of draft -11 (issue #149): the seconds until the policy makes
more quota available (:func:`next_quota_after`, per algorithm), and for a policy that
refused the request, the seconds until it would admit it, the ``Retry-After`` it alone
gives; so a refusal never says ``t=0`` (docs/rules.md, "Responses").
``headers: legacy`` renders ``X-RateLimit-Limit/Remaining/Reset`` instead for
the tightest policy, ``X-RateLimit-Reset`` being an epoch time as in
Flask-Limiter. Remaining and reset are read when the headers are first
rendered, which adapters do right after ``decide``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ratemw.algorithms.token_bucket import GCRA, TokenBucket
from ratemw.algorithms.windows import SlidingWindow, WindowState

if TYPE_CHECKING:
    from ratemw.algorithms.base import RateAlgorithm

__all__ = [
    "PROBLEM_TYPE",
    "REDUCED_CAPACITY_TYPE",
    "Decision",
    "Outcome",
    "encode_headers",
    "fast_decision_classes",
    "next_quota_after",
    "retry_seconds",
    "sf_string",
]

PROBLEM_TYPE = "https://iana.org/assignments/http-problem-types#quota-exceeded"
#: a brownout's rejection (draft-ietf-httpapi-ratelimit-headers, "temporary reduced capacity")
REDUCED_CAPACITY_TYPE = "https://iana.org/assignments/http-problem-types#temporary-reduced-capacity"
_MAX_RETRY_SECONDS = 366 * 86400.0
#: encoded RateLimit values kept per fast-path policy (emptied when full)
_ENCODED_MAX = 512
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

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Response headers as (name, value) pairs, rendered once."""
        headers = self._headers
        if headers is None:
            headers = self._headers = self._render()
        return headers

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


def retry_seconds(wait: float) -> int:
    """A wait as ``Retry-After`` (and a refusing policy's ``t``) says it: whole seconds,
    at least 1, never earlier than the wait."""
    # Waits carry a microsecond of slack against float rounding: not worth a second.
    return max(1, math.ceil(min(wait, _MAX_RETRY_SECONDS) - 1e-5))


def next_quota_after(algo: Any, state: Any, now: float) -> float:
    """Seconds until ``algo`` makes more quota available to the key of ``state``: the
    ``t`` of an admitted request (0.0 when its quota is whole).

    - ``token_bucket``, ``gcra``: until the next whole token;
    - ``fixed_window``: until the window ends;
    - ``sliding_window``: until the weighted count frees one more unit;
    - a global limit: the same, from the store's answer at the key's last call
      (its windows: until the window ends).
    """
    kind = type(algo)
    if kind is SlidingWindow:
        return _sliding_next(algo, state, now)
    if kind is TokenBucket:
        # The arithmetic of the fast path's RateLimit field (ratemw.limiter.fast), so
        # both paths render the same t.
        burst = float(algo.burst)
        tokens = state.tokens + (now - state.updated_at) * algo.rate_per_second
        return _next_unit(burst - tokens, algo.rate_per_second)
    full = float(algo.reset_after(state, now))
    if kind is GCRA or getattr(algo, "windowed", True) is False:
        return _next_unit(full * algo.rate_per_second, algo.rate_per_second)
    return full if full > 0.0 else 0.0


def _next_unit(short: float, rate: float) -> float:
    """Seconds to the next whole token of a bucket ``short`` tokens short of full,
    refilling at ``rate`` a second: the fractional part of ``short`` away, or a whole
    token when ``short`` is whole; 0.0 when it is full."""
    if short <= 0.0:
        return 0.0
    part = short - int(short)
    return (part if part > 1e-9 else 1.0) * (1.0 / rate)


def _sliding_next(algo: SlidingWindow, state: WindowState, now: float) -> float:
    w, limit = algo.window_seconds, algo.limit
    x = now / w
    idx = x // 1.0
    count, prev = 0, 0
    if idx == state.window:
        count, prev = state.count, state.prev
    elif idx == state.window + 1.0:
        prev = state.count
    else:
        return 0.0
    estimate = prev * (1.0 - (x - idx)) + count
    goal = limit - max(0, math.floor(limit - estimate)) - 1  # the estimate to get below
    if estimate <= 0.0 or goal < 0:
        return 0.0
    if count <= goal and prev:
        target = idx + 1.0 - (goal - count) / prev  # the previous window decays enough
    else:
        target = idx + 2.0 - goal / count  # this window's count, as the next one's prev
    return max(0.0, (target - x) * w)


_NAMES: dict[str, bytes] = {}  # header names seen, encoded once (a handful of them)


def encode_headers(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """(name, value) pairs as ASGI sends them: lower-case names, latin-1 bytes."""
    out = []
    for name, value in headers:  # a loop: a comprehension is a function call in 3.11
        raw = _NAMES.get(name)
        if raw is None:
            raw = name.lower().encode("latin-1")
            if len(_NAMES) < 64:
                _NAMES[name] = raw
        out.append((raw, value.encode("latin-1")))
    return out


def sf_string(value: str) -> str:
    """``value`` as an RFC 8941 sf-string (``"..."`` with ``\\`` and ``"`` escaped).

    Raises ``ValueError`` for a character an sf-string cannot hold (anything
    outside printable ASCII, CR, LF and NUL among them): no rule name can put a
    line break into a response header. Policies call it once, when compiled.
    """
    if not all(" " <= c <= "~" for c in value):
        raise ValueError(f"{value[:60]!r} cannot be written in a header (RFC 8941 sf-string)")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def policy_field(name: str, quota: int, window_seconds: float) -> str:
    """One item of ``RateLimit-Policy`` (draft-ietf-httpapi-ratelimit-headers-10).

    Raises ``ValueError`` when ``name`` cannot be an sf-string (:func:`sf_string`).
    """
    w = window_seconds
    return f"{sf_string(name)};q={quota};w={int(w) if w == int(w) else f'{w:g}'}"


def fast_decision_classes(
    policy: RatePolicy,
    wall: Callable[[], float],
    ratelimit_value: Callable[[Any, float], str] | None = None,
    retry_slack: float = 0.0,
) -> tuple[Callable[[], Decision], Callable[[], Decision]]:
    """The admitted and the rejected :class:`Decision` classes of one fast-path policy.

    What never changes for the policy (the policy itself, the wall clock, the status,
    the outcome) is a class attribute, so the fast path builds a decision with three
    slot stores (``_state``, ``_now``, ``_headers``; a rejection also ``_retry``) and no
    ``__init__`` call. ``ratelimit_value(state, now)`` renders the ``RateLimit`` field
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
    admitted = {**base, "status": 200, "_outcome": _NOTHING, "_retry": 0.0}
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
            text = self.headers[1][1]
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
        admitted["encoded_headers"] = admitted_encoded
        rejected["_render"] = render_rejected
    admitted_class: Callable[[], Decision] = type("Decision", (Decision,), admitted)
    rejected_class: Callable[[], Decision] = type("Decision", (Decision,), rejected)
    return admitted_class, rejected_class
