"""A worker process for the cross-process operations tests (spawn start method).

It builds a Limiter on the shared Redis and answers commands from its inbox until
told to stop, so the parent scripts every decision and can poll each process.
"""

from __future__ import annotations

import traceback
from typing import Any

from ratemw import Limiter, RequestInfo


def serve(url: str, rules: dict[str, Any], inbox: Any, outbox: Any) -> None:
    try:
        limiter = Limiter(rules, redis_url=url, operations={"interval_seconds": 0.1})
    except BaseException:
        outbox.put({"error": traceback.format_exc()})
        return
    outbox.put({"ready": True})
    while True:
        command, args = inbox.get()
        try:
            if command == "stop":
                limiter.close()
                outbox.put({"stopped": True})
                return
            if command == "decide":
                path, ip, n = args
                answers = []
                for _ in range(n):
                    d = limiter.decide(RequestInfo(path=path, peer=ip))
                    answers.append((d.status, d.action, d.retry_after_seconds, d.problem()))
                outbox.put({"answers": answers})
            elif command == "brownout":
                b = limiter.ops.brownout
                outbox.put({"brownout": None if b is None else b.factor})
        except BaseException:
            outbox.put({"error": traceback.format_exc()})
