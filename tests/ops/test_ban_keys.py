"""An ``ip:`` ban, whoever writes it (``ratemw ban add``, ``POST /v1/bans``,
``limiter.ban``), stops exactly the clients a request's identity key says it names,
whatever the limiters' ``ipv6_prefix``; what cannot be a client is refused."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from ratemw import Limiter, RequestInfo
from ratemw.ops.cli import parse_ban
from ratemw.ops.measures import Ban
from ratemw.ops.shared import Layout
from ratemw.store.server import RedisServer
from tests.fuzz import fuzz

APP = "bankeys"
ROOT = Path(__file__).resolve().parents[2]


def rules(prefix: int) -> dict[str, Any]:
    return {
        "identity": {"ipv6_prefix": prefix},
        "rules": [
            {"name": "login", "match": {"path": "/login"}, "limit": "1000/minute"},
            {"name": "me", "match": {"path": "/me"}, "identity": "user", "limit": "1000/minute"},
        ],
    }


class Fleet:
    """One limiter per ``ipv6_prefix``, sharing the session's Redis (made on demand)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.limiters: dict[int, Limiter] = {}
        self.redis = redis.Redis.from_url(url)
        self.layout = Layout(APP)

    def __call__(self, prefix: int) -> Limiter:
        lim = self.limiters.get(prefix)
        if lim is None:
            lim = self.limiters[prefix] = Limiter(
                rules(prefix), redis_url=self.url,
                operations={"interval_seconds": 0, "app": APP},
            )  # fmt: skip
        return lim

    def close(self) -> None:
        for lim in self.limiters.values():
            lim.close()
        self.redis.close()


@pytest.fixture(scope="module")
def fleet(redis_server: RedisServer) -> Iterator[Fleet]:
    redis_server.ensure_running()
    f = Fleet(redis_server.url)
    yield f
    f.close()


def action(lim: Limiter, peer: str, path: str = "/login") -> str:
    d = lim.decide(RequestInfo(path=path, peer=peer))
    return "allowed" if d.allowed else str(d.action)


@st.composite
def client_and_forms(draw: st.DrawFn) -> tuple[str, list[str], list[str]]:
    """(a client address, ways to write it in a ban, ways a request may come from it)."""
    if draw(st.booleans()):
        v4 = ipaddress.IPv4Address(draw(st.integers(0x01000000, 0xDFFFFFFF)))  # unicast
        mapped = ipaddress.IPv6Address(f"::ffff:{v4}")
        forms = [
            str(v4),
            str(mapped),
            mapped.exploded,
            f"::ffff:{int(v4) >> 16:x}:{int(v4) & 0xFFFF:x}",
        ]
        return str(v4), forms, [str(v4), str(mapped)]
    v6 = ipaddress.IPv6Address(draw(st.integers(0x2000 << 112, (0x3FFF << 112) - 1)))
    return str(v6), [str(v6), v6.exploded, v6.exploded.upper(), f"[{v6}]"], [str(v6)]


@fuzz
@given(client_and_forms(), st.integers(32, 128), st.data())
def test_a_ban_written_by_address_stops_the_key_a_request_from_it_has(
    fleet: Fleet, case: tuple[str, list[str], list[str]], prefix: int, data: st.DataObject
) -> None:
    address, forms, peers = case
    lim = fleet(prefix)
    form = data.draw(st.sampled_from(forms))
    digest, shown, stored = parse_ban(f"ip:{form}")
    assert shown == stored == address  # one canonical form, IPv4-mapped as IPv4
    fleet.layout.add_ban(fleet.redis, Ban("login", digest, shown, time.time() + 60, "t", stored))
    try:
        lim.ops.tick()
        for peer in peers:
            assert action(lim, peer) == "ban"
        key = lim._state.resolver.client_ip(RequestInfo(peer=peers[0]))
        # every client the limiter cannot tell apart (same key) is banned, no other one
        if ":" in address:
            group = ipaddress.IPv6Network(key if "/" in key else f"{key}/128")
            outside = ipaddress.IPv6Address(int(group.broadcast_address) + 1)
            assert action(lim, str(outside)) == "allowed"
            assert action(lim, str(group.network_address)) == "ban"
        else:
            assert action(lim, str(ipaddress.IPv4Address(address) + 1)) == "allowed"
    finally:
        fleet.layout.remove_ban(fleet.redis, "login", digest)
    lim.ops.tick()
    assert action(lim, peers[0]) == "allowed"


@pytest.mark.parametrize("prefix", [32, 48, 64, 128])
def test_network_bans_and_the_group_top_shows(fleet: Fleet, prefix: int) -> None:
    lim = fleet(prefix)
    added = []
    for text in ("2001:db8::/32", "198.51.100.0/24", "2001:db9:0:1::/64"):
        digest, shown, address = parse_ban(f"ip:{text}")
        added.append(digest)
        ban = Ban("login", digest, shown, time.time() + 60, "t", address)
        fleet.layout.add_ban(fleet.redis, ban)
    try:
        lim.ops.tick()
        assert action(lim, "2001:db8:ffff::1") == "ban"
        assert action(lim, "198.51.100.200") == "ban"
        assert action(lim, "::ffff:198.51.100.1") == "ban"
        assert action(lim, "2001:db9:0:1::9") == "ban"
        assert action(lim, "2001:dba::1") == "allowed" and action(lim, "198.51.101.1") == "allowed"
        # a network narrower than the group bans the group: the limiter cannot tell apart
        assert action(lim, "2001:db9:0:1:8000::1") == "ban"
        # 2001:db9:0:2::/64 shares a group with it when the groups are /48 or wider
        assert action(lim, "2001:db9:0:2::1") == ("ban" if prefix <= 48 else "allowed")
        assert action(lim, "198.51.100.7", "/me") == "allowed"  # another rule: not banned
        assert lim.metrics().banned >= 3
    finally:
        for digest in added:
            fleet.layout.remove_ban(fleet.redis, "login", digest)
    lim.ops.tick()
    assert action(lim, "2001:db8:ffff::1") == "allowed"


def test_limiter_ban_maps_an_address_to_the_rules_grouping(fleet: Fleet) -> None:
    lim = fleet(48)
    ban = lim.ban("login", "2001:db8:7:1::5", 60)
    assert ban.identity == "2001:db8:7:1::5" and ban.address == "2001:db8:7:1::5"
    assert action(lim, "2001:db8:7:ffff::1") == "ban"  # same /48
    assert action(lim, "2001:db8:8::1") == "allowed"
    lim.ops.lift("login", ban.digest)
    assert action(lim, "2001:db8:7:1::5") == "allowed"
    mapped = lim.ban("login", "::ffff:203.0.113.9", 60)
    assert mapped.identity == "203.0.113.9" and action(lim, "203.0.113.9") == "ban"
    lim.ops.lift("login", mapped.digest)
    with pytest.raises(ValueError, match="multicast"):
        lim.ban("login", "ff02::1", 60)
    lim.ops.tick()
    fleet.layout.expire_bans(fleet.redis, time.time() + 3600)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("ip:::", "unspecified"),
        ("ip:0.0.0.0", "unspecified"),
        ("ip:::ffff:0.0.0.0", "unspecified"),
        ("ip:ff02::1", "multicast"),
        ("ip:239.1.2.3", "multicast"),
        ("ip:255.255.255.255", "broadcast"),
        ("ip:2001:db8::5/64", "host bits set"),
        ("ip:::/0", "every client"),
        ("ip:0.0.0.0/0", "every client"),
        ("ip:sk_live_SECRET", "not an IPv4 or IPv6 address"),
        ("ip:1.2.3.4/40", "prefix longer"),
    ],
)
def test_what_cannot_be_a_client_is_refused(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as exc:
        parse_ban(text)
    assert "SECRET" not in str(exc.value)


def ratemw(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "ratemw", *argv], capture_output=True, text=True, env=env,
        timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("prefix", "written", "peer", "neighbour"),
    [
        (64, "198.51.100.8", "198.51.100.8", "198.51.100.9"),
        (64, "::ffff:198.51.100.8", "198.51.100.8", "198.51.100.9"),
        (64, "2001:db8::5", "2001:db8::ffff", "2001:db8:0:1::5"),
        (48, "2001:db8::5", "2001:db8:0:ffff::1", "2001:db8:1::5"),
        (128, "2001:db8::5", "2001:db8::5", "2001:db8::6"),
    ],
)
def test_cli_ban_add_reaches_the_limiter(
    fleet: Fleet, prefix: int, written: str, peer: str, neighbour: str
) -> None:
    lim = fleet(prefix)
    rule = "login"
    done = ratemw("ban", "add", "--redis", fleet.url, "--app", APP, "--rule", rule,
                  f"ip:{written}", "--for", "1m")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    try:
        lim.ops.tick()
        assert action(lim, peer) == "ban" and action(lim, neighbour) == "allowed"
        d = lim.decide(RequestInfo(path="/login", peer=peer))
        assert d.status == 429 and 55 <= (d.retry_after_seconds or 0) <= 60
    finally:
        removed = ratemw("ban", "remove", "--redis", fleet.url, "--app", APP, "--rule", rule,
                         f"ip:{written}")  # fmt: skip
        assert removed.returncode == 0, removed.stdout
    lim.ops.tick()
    assert action(lim, peer) == "allowed"


def test_cli_refuses_what_cannot_be_a_client(fleet: Fleet) -> None:
    done = ratemw("ban", "add", "--redis", fleet.url, "--app", APP, "--rule", "login",
                  "ip:::", "--for", "1m")  # fmt: skip
    assert done.returncode == 2 and "unspecified" in done.stdout
    assert fleet.layout.list_bans(fleet.redis, time.time()) == []
