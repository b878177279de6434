"""What operations say out loud: the rejection log and spike alerts.

Both go to the ``ratemw.events`` logger with structured fields in
``extra={"ratemw": {...}}``; identities arrive already in their shown form (an address
or ``h:`` and a keyed digest), never raw.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ratemw.ops.config import OpsConfig
    from ratemw.ops.spikes import SpikeAlert

__all__ = ["RejectionLog", "announce"]

log = logging.getLogger("ratemw")
events = logging.getLogger("ratemw.events")


class RejectionLog:
    """One line per rejection, sampled 1 in ``every`` and capped at ``per_second``
    (a token bucket); what the cap drops is summed up in one line later."""

    def __init__(self, every: int, per_second: float) -> None:
        self.every = max(1, every)
        self.per_second = per_second
        self._allowance = per_second
        self._at = time.monotonic()
        self._seen = 0
        self._suppressed = 0

    def log(
        self,
        labels: tuple[str, str, str],
        verdict: str,
        items: list[Hashable],
        shown: Callable[[Hashable], str],
    ) -> None:
        rule, route, tier = labels
        now = time.monotonic()
        rate = self.per_second
        self._allowance = min(rate, self._allowance + (now - self._at) * rate)
        self._at = now
        # 1 in `every` rejections, counted across passes; arithmetic, not a loop over a flood
        first = (-self._seen) % self.every
        self._seen += len(items)
        sampled = items[first :: self.every]
        room = max(0, int(self._allowance))
        self._suppressed += max(0, len(sampled) - room)
        for key in sampled[:room]:
            self._allowance -= 1.0
            who = shown(key)
            events.info(
                "ratemw rejected rule=%s route=%s tier=%s verdict=%s identity=%s",
                rule, route, tier, verdict, who,
                extra={"ratemw": {"event": "ratemw.rejected", "rule": rule, "route": route,
                                  "tier": tier, "verdict": verdict, "identity": who}},
            )  # fmt: skip
        if self._suppressed and self._allowance >= 1.0:
            events.info(
                "ratemw rejected: %d more lines suppressed", self._suppressed,
                extra={"ratemw": {"event": "ratemw.suppressed", "lines": self._suppressed}},
            )  # fmt: skip
            self._suppressed = 0


def announce(alert: SpikeAlert, config: OpsConfig) -> None:
    """A spike: a structured log event, the ``on_spike`` callback, the webhook."""
    data = alert.as_dict()
    events.warning(
        "ratemw spike rule=%s rate=%.1f/s baseline=%.1f/s",
        alert.rule, alert.rate_per_second, alert.baseline_per_second,
        extra={"ratemw": data},
    )  # fmt: skip
    if config.on_spike is not None:
        try:
            config.on_spike(alert)
        except Exception:
            log.exception("ratemw on_spike callback failed")
    if config.spike_webhook:
        # Off the operations thread: a slow receiver must not delay bans or brownout.
        threading.Thread(target=_post, args=(config.spike_webhook, data), daemon=True).start()


def _post(url: str, data: dict[str, object]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(data).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=5.0):
            pass
    except Exception as exc:
        log.warning("ratemw spike webhook failed: %s", type(exc).__name__)
