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

from ratemw.algorithms.quota import next_quota_after
from ratemw.decision.core import Decision, Outcome, RatePolicy, Result
from ratemw.decision.fast import fast_decision_classes
from ratemw.decision.fields import (
    PROBLEM_TYPE,
    REDUCED_CAPACITY_TYPE,
    encode_headers,
    policy_field,
    retry_seconds,
    sf_string,
)

__all__ = [
    "PROBLEM_TYPE",
    "REDUCED_CAPACITY_TYPE",
    "Decision",
    "Outcome",
    "RatePolicy",
    "Result",
    "encode_headers",
    "fast_decision_classes",
    "next_quota_after",
    "policy_field",
    "retry_seconds",
    "sf_string",
]
