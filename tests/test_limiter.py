from __future__ import annotations

import inspect
import os
import signal
import threading
import time
from typing import Any

import pytest

from ratemw import AsyncLimiter, ConfigError, Limiter, RequestInfo
from ratemw.testing import ManualClock


def rules(*rule: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"version": 1, "rules": list(rule), **top}


def req(path: str = "/login", method: str = "POST", ip: str = "198.51.100.1", **kw: Any):
    return RequestInfo(method=method, path=path, peer=ip, **kw)


LOGIN = {"name": "login", "match": {"methods": ["POST"], "path": "/login"}, "limit": "5/minute"}


def test_token_bucket_admits_burst_then_429_with_retry_after(clock: ManualClock) -> None:
    limiter = Limiter(rules(LOGIN), clock=clock)
    decisions = [limiter.decide(req()) for _ in range(6)]
    assert [d.status for d in decisions] == [200] * 5 + [429]
    rejected = decisions[-1]
    assert rejected.violated == ("login",)
    assert rejected.retry_after == pytest.approx(12.0)
    assert dict(rejected.headers)["Retry-After"] == "12"
    clock.advance(11.9)
    assert limiter.decide(req()).status == 429
    clock.advance(0.2)
    assert limiter.decide(req()).allowed


def test_other_identities_and_methods_are_not_affected(clock: ManualClock) -> None:
    limiter = Limiter(rules(LOGIN), clock=clock)
    for _ in range(5):
        limiter.decide(req())
    assert not limiter.decide(req()).allowed
    assert limiter.decide(req(ip="198.51.100.2")).allowed
    assert limiter.decide(req(method="GET")).allowed
    assert limiter.decide(req(path="/other")).allowed


def test_allowed_response_carries_ietf_headers(clock: ManualClock) -> None:
    limiter = Limiter(rules(LOGIN), clock=clock)
    d = limiter.decide(req())
    headers = dict(d.headers)
    assert headers["RateLimit-Policy"] == '"login";q=5;w=60'
    assert headers["RateLimit"] == '"login";r=4;t=12'
    assert "Retry-After" not in headers
    assert (d.limit, d.remaining) == (5, 4)


def test_legacy_and_none_header_styles(clock: ManualClock) -> None:
    legacy = Limiter(rules({**LOGIN, "headers": "legacy"}), clock=clock)
    h = dict(legacy.decide(req()).headers)
    assert h["X-RateLimit-Limit"] == "5"
    assert h["X-RateLimit-Remaining"] == "4"
    assert int(h["X-RateLimit-Reset"]) == int(clock.time() + 12)
    assert "RateLimit" not in h
    none = Limiter(rules({**LOGIN, "headers": "none"}), clock=clock)
    assert none.decide(req()).headers == []
    for _ in range(4):
        none.decide(req())
    assert [name for name, _ in none.decide(req()).headers] == ["Retry-After"]


def test_rejecting_rule_gives_other_rules_their_tokens_back(clock: ManualClock) -> None:
    wide = {"name": "wide", "match": {"path": "/login"}, "limit": "10/day"}
    tight = {
        "name": "tight",
        "match": {"path": "/login"},
        "limit": "1/minute",
        "identity": "global",
    }
    limiter = Limiter(rules(wide, tight), clock=clock)
    assert limiter.decide(req()).allowed  # wide: 9 left, tight: 0 left
    for _ in range(5):
        d = limiter.decide(req())
        assert d.violated == ("tight",)
    # "wide" still has 9 tokens: the five rejected requests cost it nothing.
    assert dict(d.headers)["RateLimit"] == '"wide";r=9;t=8640, "tight";r=0;t=60'


def test_shadow_rules_never_reject_and_are_reported(clock: ManualClock) -> None:
    shadow = {
        "name": "new-limit",
        "match": {"path": "/login"},
        "limit": "1/minute",
        "mode": "shadow",
    }
    limiter = Limiter(rules(shadow), clock=clock)
    first, second = limiter.decide(req()), limiter.decide(req())
    assert first.allowed and first.shadow == ()
    assert second.allowed and second.shadow == ("new-limit",)
    assert second.headers == []  # shadow policies are not advertised


def test_allow_list_bypasses_and_deny_list_answers_403(clock: ManualClock) -> None:
    limiter = Limiter(
        rules(
            {**LOGIN, "limit": "1/minute"},
            allow=["198.51.100.1", "user:ops"],
            deny=["203.0.113.0/24"],
        ),
        clock=clock,
    )
    assert all(limiter.decide(req()).allowed for _ in range(10))
    assert all(limiter.decide(req(ip="192.0.2.1", user="ops")).allowed for _ in range(10))
    denied = limiter.decide(req(ip="203.0.113.77"))
    assert denied.status == 403 and not denied.allowed
    assert "Retry-After" not in dict(denied.headers)


def test_tier_map_uses_resolver_then_default_tier(clock: ManualClock) -> None:
    search = {
        "name": "search",
        "match": {"path": "/search/**"},
        "identity": "user",
        "limit": {"free": "2/minute", "pro": "5/minute"},
    }
    limiter = Limiter(
        rules(search, tiers=["free", "pro"]),
        clock=clock,
        tier_resolver=lambda info: "pro" if info.user == "paying" else None,
    )

    def admitted(user: str, tier: str | None = None) -> int:
        info = req("/search/x", "GET", user=user, tier=tier)
        return sum(limiter.decide(info).allowed for _ in range(10))

    assert admitted("paying") == 5
    assert admitted("anon") == 2  # default tier: the first declared
    assert admitted("told", tier="pro") == 5
    assert admitted("bogus", tier="platinum") == 2  # unknown tiers get the default


def test_concurrency_slots_are_released_once(clock: ManualClock) -> None:
    checkout = {
        "name": "checkout",
        "match": {"path": "/checkout"},
        "identity": "user",
        "concurrency": 2,
    }
    limiter = Limiter(rules(checkout), clock=clock)
    info = req("/checkout", user="u1")
    a, b, c = (limiter.decide(info) for _ in range(3))
    assert (a.allowed, b.allowed, c.status) == (True, True, 429)
    assert c.violated == ("checkout",) and c.retry_after_seconds >= 1
    a.release()
    a.release()  # idempotent: frees one slot, not two
    d = limiter.decide(info)
    assert d.allowed
    assert not limiter.decide(info).allowed
    b.release()
    d.release()
    assert limiter.decide(info).allowed


def test_rejected_request_returns_its_concurrency_slot(clock: ManualClock) -> None:
    conc = {"name": "conc", "match": {"path": "/x"}, "concurrency": 1}
    rate = {"name": "rate", "match": {"path": "/x"}, "limit": "1/minute"}
    limiter = Limiter(rules(conc, rate), clock=clock)
    first = limiter.decide(req("/x"))
    first.release()
    second = limiter.decide(req("/x"))
    assert second.violated == ("rate",)
    clock.advance(60)
    assert limiter.decide(req("/x")).allowed  # the slot was not leaked by the rejection


def test_overrides_replace_broader_rule(clock: ManualClock) -> None:
    api = {"name": "api", "match": {"path": "/api/**"}, "identity": "tenant", "limit": "1/minute"}
    partner = {
        "name": "partner",
        "match": {"path": "/api/**", "headers": {"X-Partner": "*"}},
        "identity": "api_key",
        "limit": "3/minute",
        "overrides": ["api"],
    }
    limiter = Limiter(rules(api, partner), clock=clock)
    p = req("/api/x", "GET", headers={"x-partner": "1", "x-api-key": "secret"}, tenant="t")
    assert sum(limiter.decide(p).allowed for _ in range(5)) == 3
    plain = req("/api/x", "GET", tenant="t")
    assert sum(limiter.decide(plain).allowed for _ in range(5)) == 1


def test_missing_identity_falls_back_to_ip_or_skips(clock: ManualClock) -> None:
    by_user = {"name": "u", "match": {"path": "/a"}, "identity": "user", "limit": "1/minute"}
    skip = {
        "name": "s",
        "match": {"path": "/b"},
        "identity": "user",
        "limit": "1/minute",
        "on_missing_identity": "skip",
    }
    limiter = Limiter(rules(by_user, skip), clock=clock)
    assert limiter.decide(req("/a")).allowed
    assert not limiter.decide(req("/a")).allowed  # anonymous: limited by address
    assert limiter.decide(req("/a", ip="198.51.100.99")).allowed
    # A user literally named like the address does not share the anonymous bucket.
    assert limiter.decide(req("/a", user="198.51.100.1")).allowed
    assert all(limiter.decide(req("/b")).allowed for _ in range(5))


def test_rollout_enforces_a_stable_share_of_identities(clock: ManualClock) -> None:
    rule = {**LOGIN, "limit": "1/minute"}

    def enforced(percent: float) -> set[str]:
        limiter = Limiter(rules(rule, rollout={"enforce_percent": percent}), clock=clock)
        out = set()
        for i in range(200):
            ip = f"10.1.{i // 250}.{i % 250}"
            limiter.decide(req(ip=ip))
            second = limiter.decide(req(ip=ip))
            if not second.allowed:
                out.add(ip)
            else:
                assert second.shadow == ("login",)
        return out

    assert enforced(0) == set()
    assert len(enforced(100)) == 200
    quarter = enforced(25)
    assert 25 <= len(quarter) <= 75
    assert enforced(25) == quarter
    assert quarter <= enforced(50)


def test_threads_never_admit_more_than_the_limit() -> None:
    clock = ManualClock()  # frozen: no refill while the threads run
    limiter = Limiter(
        rules({"name": "one", "match": {"path": "/"}, "limit": "50/day", "identity": "global"}),
        clock=clock,
    )
    info = req("/", "GET")
    admitted = [0] * 64
    barrier = threading.Barrier(64)

    def worker(n: int) -> None:
        barrier.wait()
        admitted[n] = sum(limiter.decide(info).allowed for _ in range(1000))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(admitted) == 50


def test_update_rules_keeps_state_of_unchanged_rules_and_rejects_invalid(clock) -> None:
    other = {"name": "other", "match": {"path": "/o"}, "limit": "2/minute"}
    limiter = Limiter(rules(LOGIN, other), clock=clock)
    for _ in range(5):
        limiter.decide(req())
    version = limiter.snapshot.version
    limiter.update_rules(rules(LOGIN, {**other, "limit": "3/minute"}))
    assert limiter.snapshot.version != version
    assert not limiter.decide(req()).allowed  # login kept its empty bucket
    with pytest.raises(ConfigError):
        limiter.update_rules(rules({**LOGIN, "limit": "0/minute"}))
    assert sum(limiter.decide(req("/o")).allowed for _ in range(5)) == 3  # old rules still live


def test_no_rule_means_allowed_without_headers(clock: ManualClock) -> None:
    limiter = Limiter(rules(LOGIN), clock=clock)
    d = limiter.decide(req("/nothing"))
    assert d.allowed and d.status == 200 and d.headers == [] and d.remaining is None
    d.release()


def test_hostile_requests_never_raise(clock: ManualClock) -> None:
    rule = {
        "name": "any",
        "match": {"path": "/**"},
        "identity": ["ip", "api_key"],
        "limit": "100/second",
    }
    limiter = Limiter(rules(rule, identity={"trusted_proxies": ["127.0.0.1/32"]}), clock=clock)
    nasty = ["", "\x00", "{}", "x" * 65536, "\udcff", "1.2.3.4, ::::, [", 'for="[::1', "é"]
    for value in nasty:
        info = RequestInfo(
            method=value or "GET",
            path="/" + value,
            host=value,
            peer="127.0.0.1",
            headers={"x-forwarded-for": value, "forwarded": value, "x-api-key": value},
        )
        assert limiter.decide(info).status in (200, 429)


def test_key_tables_are_bounded(clock: ManualClock) -> None:
    limiter = Limiter(rules({**LOGIN, "limit": "1/minute"}), clock=clock, max_keys=100)
    for i in range(1000):
        limiter.decide(req(ip=f"10.0.{i // 250}.{i % 250}"))
    (table,) = limiter._tables.values()
    assert len(table) <= 100


def test_from_file_and_twin_api(tmp_path, clock: ManualClock) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "version: 1\nrules:\n  - name: login\n    match: {path: /login}\n    limit: 1/minute\n"
    )
    limiter = Limiter.from_file(path, clock=clock)
    assert limiter.decide(req()).allowed and not limiter.decide(req()).allowed
    sync_api = {n for n in dir(Limiter) if not n.startswith("_")} - {"close"}
    async_api = {n for n in dir(AsyncLimiter) if not n.startswith("_")} - {"aclose"}
    assert sync_api == async_api
    assert inspect.iscoroutinefunction(AsyncLimiter.decide)


async def _async_flow(limiter: AsyncLimiter) -> list[int]:
    async with limiter:
        return [(await limiter.decide(req())).status for _ in range(3)]


def test_async_limiter_decides_like_the_sync_one(clock: ManualClock) -> None:
    import asyncio

    limiter = AsyncLimiter(rules({**LOGIN, "limit": "2/minute"}), clock=clock)
    assert asyncio.run(_async_flow(limiter)) == [200, 200, 429]


def test_fast_path_and_general_path_agree(clock: ManualClock) -> None:
    # A rule without conditions takes the fast path; the same rule narrowed by a
    # method condition takes the general one. Both must answer alike.
    plain = Limiter(rules({"name": "r", "match": {"path": "/p"}, "limit": "3/minute"}), clock=clock)
    narrowed = Limiter(
        rules({"name": "r", "match": {"path": "/p", "methods": ["GET"]}, "limit": "3/minute"}),
        clock=clock,
    )
    assert plain.snapshot.candidates("/p")[2] is not None
    assert narrowed.snapshot.candidates("/p")[2] is None
    info = req("/p", "GET")
    for step in range(6):
        a, b = plain.decide(info), narrowed.decide(info)
        assert (a.status, a.violated, a.retry_after, a.headers, a.remaining, a.action) == (
            b.status,
            b.violated,
            b.retry_after,
            b.headers,
            b.remaining,
            b.action,
        ), step
        clock.advance(7.0)


def test_child_after_fork_does_not_inherit_held_locks(clock: ManualClock) -> None:
    limiter = Limiter(
        rules({"name": "r", "match": {"path": "/p"}, "limit": "3/minute"}), clock=clock
    )
    info = req("/p", "GET")
    assert limiter.decide(info).allowed
    (table,) = limiter._tables.values()
    with table.lock:  # as if another thread were inside decide() at fork time
        pid = os.fork()
        if pid == 0:  # the child: a deadlock here hangs until the parent gives up
            os._exit(0 if limiter.decide(info).allowed else 1)
    deadline = time.monotonic() + 30
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            pytest.fail("the child deadlocked on a lock held at fork time")
        time.sleep(0.01)  # polling the child's exit, with the deadline above
    assert os.waitstatus_to_exitcode(done[1]) == 0
