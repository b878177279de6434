"""Penalty box and brownout in one process, without Redis."""

from __future__ import annotations

from typing import Any

from ratemw import Limiter, RequestInfo
from ratemw.testing import ManualClock

RULES: dict[str, Any] = {
    "tiers": ["free", "pro"],
    "rules": [
        {"name": "login", "match": {"path": "/login"}, "limit": "2/minute",
         "penalty": {"after": "5/minute", "ban": "10m"}},
        {"name": "me", "match": {"path": "/me"}, "identity": "user", "limit": "1/minute",
         "penalty": {"after": "2/minute", "ban": "1m"}},
        {"name": "search", "match": {"path": "/search"}, "limit": {"free": "4/minute",
                                                                    "pro": "8/minute"}},
    ],
}  # fmt: skip


def limiter(clock: ManualClock) -> Limiter:
    return Limiter(RULES, clock=clock, operations={"interval_seconds": 0})


def login(lim: Limiter, ip: str = "198.51.100.20") -> tuple[int, str]:
    d = lim.decide(RequestInfo(path="/login", peer=ip))
    return d.status, d.action


def test_penalty_bans_after_repeated_rejections_then_expires(clock: ManualClock) -> None:
    lim = limiter(clock)
    assert [login(lim)[0] for _ in range(6)] == [200, 200, 429, 429, 429, 429]
    lim.ops.tick()  # 4 rejections: under the penalty's 5
    assert login(lim) == (429, "reject")
    lim.ops.tick()  # the 5th: banned
    assert login(lim) == (429, "ban")
    assert login(lim, "198.51.100.21") == (200, "reject")  # someone else
    clock.advance(60)  # the bucket has refilled, the ban has not ended
    assert login(lim) == (429, "ban")
    d = lim.decide(RequestInfo(path="/login", peer="198.51.100.20"))
    assert 530 <= d.retry_after_seconds <= 540
    m = lim.metrics()
    assert m.bans == {("login",): 1} and m.banned == 1
    assert m.decisions[("login", "/login", "*", "banned", "enforce")] == 3
    clock.advance(541)
    lim.ops.tick()
    assert login(lim) == (200, "reject")  # the ban ended; the bucket never saw the banned ones
    assert lim.metrics().banned == 0
    lim.close()


def test_rejections_spread_beyond_the_penalty_window_do_not_ban(clock: ManualClock) -> None:
    lim = limiter(clock)
    for _ in range(4):
        login(lim)  # 2 admitted, 2 rejected
    lim.ops.tick()
    clock.advance(61)  # a new penalty window, a refilled bucket
    for _ in range(5):
        login(lim)  # 2 admitted, 3 rejected: 3 in this window, 5 in all
    lim.ops.tick()
    assert login(lim) == (429, "reject")
    lim.close()


def test_a_banned_user_is_shown_hashed(clock: ManualClock) -> None:
    lim = limiter(clock)
    me = RequestInfo(path="/me", peer="198.51.100.22", user="alice@example.com")
    assert [lim.decide(me).status for _ in range(3)] == [200, 429, 429]
    lim.ops.tick()
    assert lim.decide(me).action == "ban"
    ((who, _),) = lim.top("me")["me"]
    assert who.startswith("h:") and "alice" not in who
    lim.close()


def test_a_manual_ban_and_lift(clock: ManualClock) -> None:
    lim = limiter(clock)
    ban = lim.ban("search", "198.51.100.23", 30)
    assert ban.identity == "198.51.100.23"
    d = lim.decide(RequestInfo(path="/search", peer="198.51.100.23", tier="pro"))
    assert (d.status, d.action, d.retry_after_seconds) == (429, "ban", 30)
    lim.ops.lift("search", ban.digest)
    assert lim.decide(RequestInfo(path="/search", peer="198.51.100.23", tier="pro")).allowed
    lim.close()


def test_brownout_selects_tiers_and_ends_at_its_deadline(clock: ManualClock) -> None:
    lim = limiter(clock)

    def search(ip: str, tier: str, n: int) -> list[int]:
        info = RequestInfo(path="/search", peer=ip, tier=tier)
        return [lim.decide(info).status for _ in range(n)]

    lim.brownout(0.5, 120, tiers=("free",))
    assert search("10.0.0.1", "free", 3) == [200, 200, 503]  # 4/minute -> 2/minute
    assert search("10.0.0.2", "pro", 9) == [200] * 8 + [429]  # pro is not browned out
    d = lim.decide(RequestInfo(path="/search", peer="10.0.0.1", tier="free"))
    assert d.action == "brownout" and d.retry_after_seconds == 30
    status, headers, body = d.response()
    assert status == 503 and b"temporary-reduced-capacity" in body
    assert ("Retry-After", "30") in headers
    assert lim.metrics().brownout_factor == 0.5
    clock.advance(121)
    lim.ops.tick()  # the deadline has passed: over by itself
    assert lim.metrics().brownout_factor == 1.0
    assert search("10.0.0.3", "free", 5) == [200] * 4 + [429]
    counts = lim.metrics().decisions
    assert counts[("search", "/search", "free", "brownout", "enforce")] == 2
    lim.close()


def test_brownout_survives_a_reload(clock: ManualClock) -> None:
    lim = limiter(clock)
    lim.brownout(0.25, 60, rules=("login",))
    lim.update_rules(RULES)
    assert [login(lim)[0] for _ in range(2)] == [200, 503]  # 2/minute * 0.25 -> 1 (at least)
    lim.close()
