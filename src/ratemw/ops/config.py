"""``OpsConfig``: how a limiter observes itself and reacts (docs/operations.md)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ratemw.ops.spikes import SpikeConfig

if TYPE_CHECKING:
    from ratemw.ops.challenge import ChallengeContext, ChallengeResponse
    from ratemw.ops.spikes import SpikeAlert
    from ratemw.request import RequestInfo

__all__ = ["OpsConfig"]


def _secret_from_env() -> str | None:
    return os.environ.get("RATEMW_CHALLENGE_SECRET") or None


@dataclass(frozen=True, slots=True)
class OpsConfig:
    """Options of the operations layer; every field has a working default.

    ``metrics``: count every decision (off only to measure what counting costs).
    ``interval_seconds``: the operations loop: bans and brownout are read from Redis,
    top offenders merged into it, spikes checked, rejections logged, this often
    (0: no loop; call ``limiter.ops.tick()`` yourself, as tests do).
    ``top_k``: offenders kept per rule. ``spikes`` / ``on_spike`` / ``spike_webhook``:
    spike alerts and where they go besides the log and the metric.
    ``challenge_secret`` (default ``RATEMW_CHALLENGE_SECRET``) signs challenge passes,
    valid ``challenge_ttl_seconds``; ``challenge_page`` renders the challenge and
    ``challenge_verify(info, query)`` checks a solution (default: the page's button,
    i.e. a click; plug a CAPTCHA provider's server-side check here).
    ``log_every`` / ``log_per_second``: rejection log lines are sampled (1 in N) and
    capped per second. ``app`` namespaces the Redis keys, as for leases.
    ``max_identities`` bounds the per-identity state kept per rule (penalty windows,
    bans held in memory); ``None``: the limiter's ``max_keys``.
    ``poll_seconds``: with Redis, the longest a pass goes without learning the version
    of the fleet's bans and brownout (the engine's heartbeat brings it for free; the
    loop asks itself only when no heartbeat did); ``None``: 4 intervals (2 s).
    ``top_push_seconds``: top offenders go to Redis this often; ``None``: 10 intervals
    (5 s). Both follow ``interval_seconds``, so ``0`` (manual ticks) does all each tick.
    """

    metrics: bool = True
    interval_seconds: float = 0.5
    top_k: int = 20
    spikes: SpikeConfig = field(default_factory=SpikeConfig)
    on_spike: Callable[[SpikeAlert], None] | None = None
    spike_webhook: str | None = None
    challenge_secret: str | bytes | None = field(default_factory=_secret_from_env)
    challenge_ttl_seconds: float = 900.0
    challenge_path: str = "/.ratemw/challenge"
    challenge_page: Callable[[ChallengeContext], ChallengeResponse] | None = None
    challenge_verify: Callable[[RequestInfo, Mapping[str, str]], bool] | None = None
    challenge_extra: Mapping[str, str] = field(default_factory=dict)
    log_every: int = 1
    log_per_second: float = 10.0
    app: str = "default"
    queue_limit: int = 65_536  # rejected identities a pass looks at per rule (the newest)
    max_identities: int | None = None  # per-identity entries per rule; None: max_keys
    poll_seconds: float | None = None  # None: 4 x interval_seconds
    top_push_seconds: float | None = None  # None: 10 x interval_seconds

    def __post_init__(self) -> None:
        if isinstance(self.spikes, Mapping):  # OpsConfig(spikes={...}), as in a settings file
            object.__setattr__(self, "spikes", SpikeConfig(**self.spikes))
        if self.interval_seconds < 0 or self.top_k < 1 or self.log_every < 1:
            raise ValueError("interval_seconds >= 0, top_k >= 1 and log_every >= 1, please")
        if self.max_identities is not None and self.max_identities < 1:
            raise ValueError("max_identities must be at least 1 (or None: max_keys)")
        if min(self.poll_seconds or 0.0, self.top_push_seconds or 0.0) < 0:
            raise ValueError("poll_seconds and top_push_seconds must be >= 0 (or None)")

    @property
    def poll_every(self) -> float:
        return 4 * self.interval_seconds if self.poll_seconds is None else self.poll_seconds

    @property
    def push_every(self) -> float:
        if self.top_push_seconds is None:
            return 10 * self.interval_seconds
        return self.top_push_seconds

    @classmethod
    def coerce(cls, value: OpsConfig | Mapping[str, Any] | None) -> OpsConfig:
        if value is None:
            return cls()
        if isinstance(value, OpsConfig):
            return value
        return cls(**dict(value))
