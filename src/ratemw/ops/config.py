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

    def __post_init__(self) -> None:
        if isinstance(self.spikes, Mapping):  # OpsConfig(spikes={...}), as in a settings file
            object.__setattr__(self, "spikes", SpikeConfig(**self.spikes))
        if self.interval_seconds < 0 or self.top_k < 1 or self.log_every < 1:
            raise ValueError("interval_seconds >= 0, top_k >= 1 and log_every >= 1, please")

    @classmethod
    def coerce(cls, value: OpsConfig | Mapping[str, Any] | None) -> OpsConfig:
        if value is None:
            return cls()
        if isinstance(value, OpsConfig):
            return value
        return cls(**dict(value))
