"""Allow and deny lists compare the client's full address, whatever ``ipv6_prefix`` groups
it by, and ``list_entry_problem`` names the entries that are invalid or never match."""

from __future__ import annotations

import ipaddress
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ratemw import Limiter, RequestInfo
from ratemw.addresses import list_entry_problem, parse_network
from ratemw.identity.access_list import AccessList
from ratemw.identity.resolver import IdentityResolver
from ratemw.rules.model import IdentityConfig
from tests.fuzz import fuzz

PREFIXES = st.integers(min_value=32, max_value=128)


def resolver(prefix: int, proxies: tuple[str, ...] = ()) -> IdentityResolver:
    config = IdentityConfig(trusted_proxies=proxies, ipv6_prefix=prefix)
    return IdentityResolver(config, hash_key=b"k")


def listed(entries: list[str], r: IdentityResolver, req: RequestInfo) -> bool:
    return AccessList(entries, r).contains(req, r.client_address(req), r)


@st.composite
def address_in_network(draw: st.DrawFn) -> tuple[str, str]:
    """(an address, a network entry containing it), IPv4 or IPv6."""
    v6 = draw(st.booleans())
    bits = 128 if v6 else 32
    value = draw(st.integers(min_value=1, max_value=2**bits - 1))
    addr = ipaddress.IPv6Address(value) if v6 else ipaddress.IPv4Address(value)
    mapped = isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None
    if addr.is_multicast or addr.is_unspecified or mapped:
        addr = ipaddress.ip_address("2001:db8::5" if v6 else "198.51.100.8")
    prefix = draw(st.integers(min_value=1, max_value=bits))
    net = ipaddress.ip_network((addr, prefix), strict=False)
    entry = str(net) if prefix < bits or draw(st.booleans()) else str(addr)
    return str(addr), entry


@fuzz
@given(address_in_network(), PREFIXES, st.booleans())
def test_a_deny_entry_stops_every_address_it_contains(
    pair: tuple[str, str], prefix: int, forwarded: bool
) -> None:
    address, entry = pair
    r = resolver(prefix, ("10.0.0.0/8",))
    req = (
        RequestInfo(peer="10.0.0.1", headers={"x-forwarded-for": address})
        if forwarded
        else RequestInfo(peer=address)
    )
    assert listed([entry], r, req)
    assert listed([f"ip:{entry}"], r, req)


@fuzz
@given(address_in_network(), PREFIXES)
def test_a_deny_entry_stops_no_address_outside_it(pair: tuple[str, str], prefix: int) -> None:
    _, entry = pair
    net = parse_network(entry, strict=False)
    if net.prefixlen == 0:
        return
    # the address just past the network: same version, outside it
    outside = int(net.broadcast_address) + 1
    if outside > 2**net.max_prefixlen - 1:
        outside = int(net.network_address) - 1
    other = ipaddress.ip_address(outside) if net.version == 4 else ipaddress.IPv6Address(outside)
    if other.version == 6 and other.ipv4_mapped is not None:
        return
    assert not listed([entry], resolver(prefix), RequestInfo(peer=str(other)))


@fuzz
@given(st.integers(min_value=1, max_value=2**32 - 2), PREFIXES, st.integers(0, 32))
def test_ipv4_mapped_clients_and_entries_are_ipv4(value: int, prefix: int, bits: int) -> None:
    v4 = ipaddress.IPv4Address(value)
    net = ipaddress.IPv4Network((v4, bits), strict=False)
    mapped_net = f"::ffff:{net.network_address}/{96 + bits}"
    r = resolver(prefix)
    for peer in (str(v4), f"::ffff:{v4}"):
        req = RequestInfo(peer=peer)
        assert listed([str(net)], r, req) and listed([mapped_net], r, req)
        assert listed([f"::ffff:{v4}"], r, req)


def test_the_issue_examples() -> None:
    r = resolver(64)
    assert listed(["2001:db8::5/128"], r, RequestInfo(peer="2001:db8::5"))
    assert listed(["2001:db8:0:0:1::/80"], r, RequestInfo(peer="2001:db8::1:0:0:7"))
    assert not listed(["2001:db8:0:0:1::/80"], r, RequestInfo(peer="2001:db8::7"))
    assert not listed(["2001:db8::5"], r, RequestInfo(peer="2001:db8::6"))
    assert listed(["fe80::1"], r, RequestInfo(peer="fe80::1%eth0"))  # zones are dropped


@cache
def limiter(prefix: int) -> Limiter:
    rules: dict[str, Any] = {
        "identity": {"ipv6_prefix": prefix},
        "deny": ["2001:db8::5/128", "2001:db8:0:0:1::/80", "::ffff:198.51.100.8"],
        "allow": ["2001:db8:1::7"],
        "rules": [{"name": "all", "match": {"path": "/**"}, "limit": "1/hour"}],
    }
    return Limiter(rules, operations={"interval_seconds": 0})


@pytest.mark.parametrize("prefix", [32, 48, 64, 96, 128])
def test_the_limiter_answers_listed_clients_whatever_the_grouping(prefix: int) -> None:
    lim = limiter(prefix)

    def status(peer: str) -> int:
        return lim.decide(RequestInfo(path="/x", peer=peer)).status

    assert status("2001:db8::5") == 403
    assert status("2001:db8::1:2:3:4") == 403
    assert status("198.51.100.8") == 403 and status("::ffff:198.51.100.8") == 403
    assert [status("2001:db8:1::7") for _ in range(3)] == [200, 200, 200]  # allowed
    assert status("2001:db8:2::9") == 200  # not listed: limited as usual


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ("2001:db8::5/128", None),
        ("2001:db8:0:0:1::/80", None),
        ("::ffff:198.51.100.0/120", None),
        ("ip:198.51.100.8", None),
        ("user:ops", None),
        ("header:X-Canary:yes", None),
        ("0.0.0.0/0", None),
        ("", "an empty entry"),
        ("user:", "empty value never matches"),
        ("ip:", "empty value never matches"),
        ("header:X-Canary:", "empty value never matches"),
        ("header:X Bad:1", "expected header:NAME:VALUE"),
        ("ip:sk_live_SECRET", "not an IPv4 or IPv6 address or network"),
        ("2001:db8::5/64", "host bits set, which is ambiguous: write 2001:db8::/64"),
        ("198.51.100.8/24", "write 198.51.100.0/24 for the network or 198.51.100.8"),
        ("::", "unspecified"),
        ("0.0.0.0", "unspecified"),
        ("ff02::1", "multicast"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("1.2.3.4/33", "prefix longer than /32"),
        ("localhost", "neither an IP address, a network nor kind:value"),
        ("group:admins", "unknown kind 'group'"),
    ],
)
def test_list_entry_problems(entry: str, problem: str | None) -> None:
    got = list_entry_problem(entry)
    if problem is None:
        assert got is None
    else:
        assert got is not None and problem in got
        assert "SECRET" not in got


@fuzz
@given(st.text(max_size=60))
def test_any_entry_the_check_accepts_is_read_by_the_list(entry: str) -> None:
    r = resolver(64)
    acl = AccessList([entry], r)  # never raises, whatever the text
    if list_entry_problem(entry) is None and entry.strip():
        assert not acl.empty
