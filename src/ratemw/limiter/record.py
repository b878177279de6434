"""The hot-path half of recording (docs/replay.md): ``attach`` gives a limiter a
``decide`` that also appends one tuple per decision to the recorder's buffer, and binds
the encoder with which the recorder's flush thread turns those tuples into lines.

Everything costly (identity digests, sampling, which rules matched) happens in the
encoder, off the request.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from ratemw.decision import Decision
from ratemw.limiter.plan import ALLOWED
from ratemw.ops.record import Recorder

if TYPE_CHECKING:
    from ratemw.limiter.installed import Installed
    from ratemw.request import RequestInfo
    from ratemw.rules.compile import Snapshot

__all__ = ["attach"]

#: longest method, path, host, route and tier kept (longer ones are cut)
MAX_METHOD, MAX_PATH, MAX_HOST, MAX_NAME = 16, 2048, 255, 256
#: an arrival holding concurrency slots waits this long for its finish before it is
#: written without one
MAX_PENDING_SECONDS = 600.0
#: at most this many such arrivals wait (beyond, they are written without a finish)
MAX_PENDING = 10_000
#: (time, request, decision or, from the fast path, its status, rules, finish)
_Arrival = tuple[float, "RequestInfo", "Decision | int", "Installed", list[float] | None]


class _Timed:
    """A concurrency slot that notes when it was given back (the request's finish)."""

    __slots__ = ("_clock", "_slot", "finish")

    def __init__(self, slot: Any, clock: Callable[[], float], finish: list[float]) -> None:
        self._slot = slot
        self._clock = clock
        self.finish = finish

    def release(self) -> bool:
        if not self.finish:
            self.finish.append(self._clock())
        return bool(self._slot.release())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._slot, name)


def attach(core: Any, record: Recorder | Mapping[str, Any] | str | os.PathLike[str]) -> Recorder:
    """Record every decision of ``core`` with ``record`` (a :class:`Recorder` or its
    arguments); the recorder's thread starts now."""
    rec = Recorder.coerce(record)
    rec.bind_key(core._hash_key)
    rec.encode = _Encoder(core, rec).encode
    # "shared": limits were global (leased from Redis), so the replay's one exact bucket
    # differs from the leased reality by at most the lease bound (docs/global.md).
    rec.header_extra = lambda: {"rules": core.snapshot.version, "shared": core.engine is not None}
    append = rec.buffer.append  # the deque is never replaced (a fork clears it)
    mono = core._monotonic

    def note(info: RequestInfo, d: Decision) -> None:
        """The general path's arrival: its time (none when no rule ran), slots' finish."""
        slots = d._outcome.slots
        finish: list[float] | None = None
        if slots:  # concurrency: its finish is when the slots go back
            finish = []
            d._outcome.slots = [_Timed(s, mono, finish) for s in slots]
        append((info, d, d._now or mono(), finish))

    # The limiter's own decide with one append on its fast path (these lines mirror
    # _LimiterCore._decide and AsyncLimiter.decide_nowait): no wrapper's call per request.
    # The fast path keeps no Decision: one rule, so its status says the verdict, and a
    # retained object per request would cost the garbage collector more than the append.
    def decide(info: RequestInfo) -> Decision:
        d: Decision | None
        hit = core._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                d = policy.fast(info)
                if d is not None:
                    append((info, d._now, d.status))
                    return d
        d = core._drive(core._plan(hit, info))
        note(info, d)
        return d

    def decide_nowait(info: RequestInfo) -> Decision | Awaitable[Decision]:
        d: Decision | None
        hit = core._by_path.get(info.path)
        if hit is not None:
            policy = hit[2]
            if policy is not None:
                d = policy.fast(info)
                if d is not None:
                    append((info, d._now, d.status))
                    return d
        return _later(core._adrive(core._plan(hit, info)), info)

    async def _later(pending: Awaitable[Decision], info: RequestInfo) -> Decision:
        d = await pending
        note(info, d)
        return d

    install = core._install

    def installing(state: Installed) -> None:
        install(state)
        append((None, state, mono()))  # the arrivals after it were decided by these rules

    # Instance attributes shadow the class's methods: the limiter's code is untouched.
    core._install = installing
    if _is_async(core):
        core.decide_nowait = decide_nowait
        aclose = core.aclose

        async def aclosing() -> None:
            await aclose()
            rec.close()

        core.aclose = aclosing
    else:
        core.decide = core.decide_nowait = decide
        close = core.close

        def closing() -> None:
            close()
            rec.close()

        core.close = closing
    rec.start()
    return rec


def _is_async(core: Any) -> bool:
    import inspect

    return inspect.iscoroutinefunction(type(core).decide)


class _Encoder:
    """Turns buffered arrivals into recording lines, in the recorder's thread."""

    def __init__(self, core: Any, rec: Recorder) -> None:
        self._core = core
        self._rec = rec
        self._version: str | None = None
        self._kinds: dict[str, tuple[str, ...]] = {}
        self._pending: list[_Arrival] = []
        self._state: Installed = core._state

    def kinds(self, snapshot: Snapshot) -> tuple[str, ...]:
        """The identity kinds the rules use, plus ``ip`` (the fallback) and ``by``."""
        hit = self._kinds.get(snapshot.version)
        if hit is None:
            seen = dict.fromkeys(("ip", self._rec.by))
            for cr in snapshot.rules:
                seen.update(dict.fromkeys(k for k in cr.rule.identity if k != "global"))
            hit = self._kinds[snapshot.version] = tuple(seen)
            if len(self._kinds) > 64:
                self._kinds = {snapshot.version: hit}
        return hit

    def arrivals(self, batch: list[tuple[Any, ...]]) -> list[_Arrival]:
        """The buffer's entries as arrivals, each with the rules that decided it."""
        out: list[_Arrival] = []
        state = self._state
        for entry in batch:
            if entry[0] is None:  # new rules installed
                state = entry[1]
            elif len(entry) == 3:  # the fast path: (info, time, status)
                info, t, status = entry
                out.append((t, info, status, state, None))
            else:
                info, d, t, finish = entry
                out.append((t, info, d, state, finish))
        self._state = state
        return out

    def encode(self, batch: list[tuple[Any, ...]], final: bool) -> Iterator[dict[str, Any]]:
        core = self._core
        offset = core._wall() - core._monotonic()
        now = core._monotonic()
        waiting, self._pending = self._pending, []
        for arrival in [*waiting, *self.arrivals(batch)]:
            finish = arrival[4]
            if finish is not None and not finish and not final:  # still running
                young = now - arrival[0] < MAX_PENDING_SECONDS
                if young and len(self._pending) < MAX_PENDING:
                    self._pending.append(arrival)
                    continue
            line = self._line(arrival, offset)
            if line is None:
                continue
            version = arrival[3].snapshot.version
            if version != self._version:
                self._version = version
                yield {"rules": version, "t": line["t"]}
            yield line

    def _line(self, arrival: _Arrival, offset: float) -> dict[str, Any] | None:
        t, info, d, st, finish = arrival
        rec = self._rec
        resolver = st.resolver
        if not rec.sampled(resolver.part(rec.by, info)):
            return None
        ids = {}
        for kind in self.kinds(st.snapshot):
            value = resolver.part(kind, info)
            if value is not None:
                ids[kind] = rec.digest(kind, value)
        snapshot = st.snapshot
        matched = snapshot.match(info)
        line: dict[str, Any] = {
            "t": t,  # unrounded: a bucket at its edge decides by the last bit
            "w": round(t + offset, 3),
            "m": info.method[:MAX_METHOD],
            "p": info.path[:MAX_PATH],
            "h": info.host[:MAX_HOST],
            "id": ids,
            "s": d if isinstance(d, int) else d.status,
        }
        if info.route:
            line["r"] = info.route[:MAX_NAME]
        if snapshot.needs_tier:
            tier = self._core._tier(info, snapshot)
            if tier is not None:
                line["tier"] = tier[:MAX_NAME]
        if isinstance(d, int):  # the fast path: one rule, its verdict the status
            verdict = "allow" if d < 300 else "reject"
            line["v"] = {cr.name: verdict for cr in matched}
        elif d.status == 403 or (d is ALLOWED and matched):
            line["gate"] = 1  # decided by the kill switch or a list, before any rule
        else:
            violated, shadow = d.violated, d.shadow
            line["v"] = {
                cr.name: "reject" if cr.name in violated else "shadow" if cr.name in shadow
                else "allow"
                for cr in matched
            }  # fmt: skip
        costs = {cr.name: cr.rule.cost for cr in matched if cr.rule.cost != 1}
        if costs:
            line["cost"] = costs
        if finish:
            line["fin"] = finish[0]
        return line
