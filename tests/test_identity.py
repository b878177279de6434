from __future__ import annotations

from typing import Any

import pytest

from ratemw.identity.access_list import AccessList
from ratemw.identity.resolver import IdentityResolver
from ratemw.request import RequestInfo
from ratemw.rules.model import IdentityConfig, JWTConfig

PROXIES = ("10.0.0.0/8", "127.0.0.1/32")


def resolver(**kw: Any) -> IdentityResolver:
    return IdentityResolver(IdentityConfig(**{"trusted_proxies": PROXIES, **kw}), hash_key=b"k")


def info(peer: str, **headers: str) -> RequestInfo:
    return RequestInfo(peer=peer, headers={k.replace("_", "-"): v for k, v in headers.items()})


@pytest.mark.parametrize(
    ("peer", "xff", "client"),
    [
        ("198.51.100.1", "1.2.3.4", "198.51.100.1"),  # untrusted peer: header ignored
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # right-most untrusted hop wins
        ("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),  # through two proxies
        ("10.0.0.5", "10.0.0.7, 10.0.0.9", "10.0.0.7"),  # all proxies: left-most
        ("10.0.0.5", "1.2.3.4, garbage", "10.0.0.5"),  # unreadable hop: believe nothing
        ("10.0.0.5", "1.2.3.4:5678", "1.2.3.4"),
        ("127.0.0.1", "", "127.0.0.1"),
    ],
)
def test_x_forwarded_for_is_believed_only_through_trusted_proxies(peer, xff, client) -> None:
    assert resolver().client_ip(info(peer, x_forwarded_for=xff)) == client


def test_forwarded_header_is_used_when_there_is_no_x_forwarded_for() -> None:
    r = resolver()
    fwd = 'for=192.0.2.60;proto=http;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'
    assert r.client_ip(info("10.1.1.1", forwarded=fwd)) == "2001:db8:cafe::/64"
    assert r.client_ip(info("198.51.100.2", forwarded=fwd)) == "198.51.100.2"


def test_ipv6_clients_are_grouped_by_prefix() -> None:
    assert resolver().client_ip(info("2001:db8:1:2:3:4:5:6")) == "2001:db8:1:2::/64"
    assert resolver(ipv6_prefix=48).client_ip(info("2001:db8:1:2::1")) == "2001:db8:1::/48"
    assert resolver(ipv6_prefix=128).client_ip(info("2001:db8::1")) == "2001:db8::1"
    assert resolver().client_ip(info("::ffff:10.0.0.5", x_forwarded_for="1.2.3.4")) == "1.2.3.4"


def test_secrets_are_digested_with_a_keyed_hash() -> None:
    r = resolver()
    req = RequestInfo(headers={"x-api-key": "sk_live_SECRET", "authorization": "Bearer t0k"})
    key = r.key(("api_key",), req)
    assert isinstance(key, str) and len(key) == 32 and "SECRET" not in key
    assert key == r.key(("api_key",), RequestInfo(api_key="sk_live_SECRET"))
    assert key != IdentityResolver(IdentityConfig(), hash_key=b"other").key(("api_key",), req)
    header_key = r.key(("header:authorization",), req)
    assert isinstance(header_key, str) and "t0k" not in header_key


def test_composite_global_and_missing_identities() -> None:
    r = resolver()
    req = RequestInfo(peer="198.51.100.3", tenant="acme")
    assert r.key(("tenant", "ip"), req) == ("acme", "198.51.100.3")
    assert r.key(("user", "ip"), req) is None
    assert r.key(("global",), req) == ""
    assert r.key_function(("user",))(req) is None


def test_tenant_and_jwt_claims_come_only_from_verified_claims() -> None:
    r = IdentityResolver(IdentityConfig(jwt=JWTConfig(tenant_claim="org")), hash_key=b"k")
    req = RequestInfo(claims={"org": "acme", "sub": "u1"})
    assert r.key(("tenant",), req) == "acme"
    sub = r.key(("jwt:sub",), req)
    assert isinstance(sub, str) and sub != "u1" and len(sub) == 32
    assert r.key(("jwt:sub",), RequestInfo()) is None


def test_access_list_entries() -> None:
    r = resolver()
    entries = ["127.0.0.1", "203.0.113.0/24", "user:ops", "tenant:t1", "api_key:k-1"]
    acl = AccessList([*entries, "2001:db8::1", "header:X-Canary:yes"], r)

    def has(**kw: Any) -> bool:
        req = RequestInfo(**kw)
        return acl.contains(req, r.client_address(req), r)

    assert has(peer="127.0.0.1") and has(peer="203.0.113.200")
    assert not has(peer="203.0.114.1")
    assert has(peer="1.1.1.1", user="ops") and not has(peer="1.1.1.1", user="op")
    assert has(peer="1.1.1.1", tenant="t1")
    assert has(peer="1.1.1.1", headers={"x-api-key": "k-1"})
    assert has(peer="2001:db8::1") and has(peer="::ffff:127.0.0.1")
    assert not has(peer="2001:db8::2")  # lists compare full addresses, not /64 groups
    assert has(peer="1.1.1.1", headers={"x-canary": "yes"})
    assert not has(peer="1.1.1.1", headers={"x-canary": "no"})
    assert AccessList([], r).empty


def test_the_full_address_is_kept_beside_the_group() -> None:
    r = resolver()
    req = info("10.0.0.5", x_forwarded_for="2001:db8:1:2:3:4:5:6")
    assert r.client_address(req) == "2001:db8:1:2:3:4:5:6"
    assert r.client_ip(req) == "2001:db8:1:2::/64"
    assert r.client_address(info("::ffff:198.51.100.8")) == "198.51.100.8"
    assert r.client_address(info("fe80::1%eth0")) == "fe80::1"
    assert r.client_address(RequestInfo()) == "unknown"


def test_an_address_or_network_maps_to_the_key_a_request_from_it_has() -> None:
    import ipaddress

    r48 = resolver(ipv6_prefix=48)
    assert r48.normalise(ipaddress.ip_address("::ffff:198.51.100.8")) == "198.51.100.8"
    assert r48.key_of_network(ipaddress.ip_network("2001:db8:1:2::/64")) == "2001:db8:1::/48"
    assert r48.key_of_network(ipaddress.ip_network("2001:db8::/32")) is None
    assert r48.key_of_network(ipaddress.ip_network("198.51.100.8/32")) == "198.51.100.8"
    assert r48.key_of_network(ipaddress.ip_network("198.51.100.0/24")) is None
    r128 = resolver(ipv6_prefix=128)
    assert r128.key_of_network(ipaddress.ip_network("2001:db8::5/128")) == "2001:db8::5"
