"""The identity resolver on hostile peers and headers: it never raises, the client
address is the peer unless the peer is a trusted proxy, it is always an address (or the
unknown marker), and a raw API key or header value never appears in any identity key."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st

from ratemw import RequestInfo
from ratemw.identity.resolver import UNKNOWN_ADDRESS, IdentityResolver
from ratemw.rules.model import IdentityConfig
from tests.fuzz import fuzz
from tests.fuzz.test_fuzz_requests import ADDRESSES, HEADERS

PROXIES = ("10.0.0.0/8", "::1/128")
KINDS = ("ip", "user", "tenant", "api_key", "global", "header:x-t", "jwt:sub")


def _resolver(prefix: int) -> IdentityResolver:
    config = IdentityConfig(trusted_proxies=PROXIES, ipv6_prefix=prefix)
    return IdentityResolver(config, hash_key=b"fuzz key of sixteen bytes")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=True)
    except ValueError:
        return False
    return True


def _is_untrusted_address(peer: str) -> bool:
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return not any(addr in ipaddress.ip_network(n) for n in PROXIES)


@fuzz
@given(peer=ADDRESSES, headers=HEADERS, prefix=st.integers(0, 128),
       secret=st.text(min_size=12, max_size=40))  # fmt: skip
def test_the_resolver_never_raises_and_never_keeps_a_secret(
    peer: str, headers: dict[str, str], prefix: int, secret: str
) -> None:
    resolver = _resolver(prefix)
    info = RequestInfo(peer=peer, headers={**headers, "x-api-key": secret, "x-t": secret})
    ip = resolver.client_ip(info)
    # the peer comes from the server, not the client: it may be kept verbatim
    assert ip in (UNKNOWN_ADDRESS, peer) or _is_address(ip)
    if _is_untrusted_address(peer):
        assert ip == resolver.client_ip(RequestInfo(peer=peer))  # headers changed nothing
    for kind in KINDS:
        key = resolver.key((kind,), info)
        assert secret not in repr(key) or kind == "ip"
