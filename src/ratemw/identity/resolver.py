"""Who a request is: client address behind trusted proxies, and identity keys.

The client address is the TCP peer unless the peer is a trusted proxy, in which
case ``X-Forwarded-For`` (else ``Forwarded``) is read from the right and the
first hop that is not a trusted proxy is the client (the right-most untrusted
hop: everything left of it was written by the client and can be forged).
IPv6 clients are grouped by prefix, since one host usually owns a whole /64; allow
and deny lists (:mod:`ratemw.identity.access_list`) compare the full address instead
(:mod:`ratemw.addresses` holds the one canonical form of addresses: IPv4-mapped IPv6 is
IPv4, zones are dropped).

Identity keys are plain strings for ``ip``, ``user`` and ``tenant``; secrets
(API keys, header values, JWT claims) are replaced by a keyed BLAKE2b digest
before they are used anywhere, so a raw key never reaches a store key, a
metric label or a log line. A key that falls back to the client address is a
``("ip", address)`` tuple, so no user name can collide with an address.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

from ratemw.addresses import (
    IPAddress,
    IPNetwork,
    parse_address,
    parse_network,
)
from ratemw.addresses import (
    canonical as _canonical,
)

if TYPE_CHECKING:
    from ratemw.request import RequestInfo
    from ratemw.rules.model import IdentityConfig

__all__ = ["CACHE_LIMIT", "UNKNOWN_ADDRESS", "IdentityResolver"]

UNKNOWN_ADDRESS = "unknown"
CACHE_LIMIT = 8192
_DEFAULT_HASH_KEY = b"ratemw:identity:v1"

_parse_ip = parse_address  # the canonical address of a peer or hop, or None


def _forwarded_for(value: str) -> list[str]:
    """The ``for=`` values of an RFC 7239 ``Forwarded`` header, in order."""
    hops: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, val = pair.strip().partition("=")
            if name.strip().lower() == "for":
                hops.append(val.strip().strip('"'))
    return hops


def _user(info: RequestInfo) -> str | None:
    return info.user or None


def _global(info: RequestInfo) -> str:
    return ""


class IdentityResolver:
    """Derives client addresses and identity keys from a :class:`RequestInfo`.

    ``hash_key`` keys the digest of secrets; every process sharing a store must
    use the same one (default: ``RATEMW_HASH_KEY`` from the environment).
    """

    def __init__(self, config: IdentityConfig, *, hash_key: bytes | str | None = None) -> None:
        self.config = config
        self._proxies: tuple[IPNetwork, ...] = tuple(
            parse_network(n, strict=False) for n in config.trusted_proxies
        )
        self._v6_prefix = config.ipv6_prefix
        self._api_key_header = config.api_key_header.lower()
        key = hash_key if hash_key is not None else os.environ.get("RATEMW_HASH_KEY", "")
        if isinstance(key, str):
            key = key.encode()
        self._hash_key = (key or _DEFAULT_HASH_KEY)[:64]
        self._trusted_cache: dict[str, bool] = {}
        self._v6_cache: dict[str, str] = {}
        self._full_cache: dict[str, str] = {}

    # -- client address ---------------------------------------------------

    def client_ip(self, info: RequestInfo) -> str:
        """The client as identity: IPv4 as is, IPv6 as its prefix (``2001:db8::/64``)."""
        peer = info.peer
        if self._proxies and self._is_trusted(peer):
            forwarded = self._from_headers(info)
            if forwarded is not None:
                return self._group(forwarded) if ":" in forwarded else forwarded
        if not peer:
            return UNKNOWN_ADDRESS
        if ":" in peer:
            return self._group(peer)
        return peer

    def client_address(self, info: RequestInfo) -> str:
        """The client's full canonical address (never grouped), as lists compare it."""
        peer = info.peer
        if self._proxies and self._is_trusted(peer):
            forwarded = self._from_headers(info)
            if forwarded is not None:
                return forwarded
        if not peer:
            return UNKNOWN_ADDRESS
        if ":" in peer:
            return self._full(peer)
        return peer

    def _from_headers(self, info: RequestInfo) -> str | None:
        """The full address of the right-most untrusted forwarded hop."""
        headers = info.headers
        xff = headers.get("x-forwarded-for")
        hops = [h.strip() for h in xff.split(",")] if xff else None
        if hops is None:
            fwd = headers.get("forwarded")
            hops = _forwarded_for(fwd) if fwd else None
        if not hops:
            return None
        client: str | None = None
        for hop in reversed(hops):
            addr = _parse_ip(hop)
            if addr is None:
                # A trusted proxy wrote something unreadable: stop believing the header.
                break
            client = str(addr)
            if not any(addr in net for net in self._proxies):
                return client
        # Every hop was a trusted proxy: the left-most one we could read is the client.
        return client

    def _is_trusted(self, peer: str) -> bool:
        cache = self._trusted_cache
        hit = cache.get(peer)
        if hit is None:
            addr = _parse_ip(peer)
            hit = addr is not None and any(addr in net for net in self._proxies)
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[peer] = hit
        return hit

    def normalise(self, addr: IPAddress) -> str:
        """An address as identity: IPv4 as is, IPv6 as its configured prefix (an
        IPv4-mapped IPv6 address is its IPv4 address, as for a request)."""
        addr = _canonical(addr)
        if isinstance(addr, ipaddress.IPv4Address):
            return str(addr)
        if self._v6_prefix >= 128:
            return str(addr)
        return str(ipaddress.IPv6Network((addr, self._v6_prefix), strict=False))

    def key_of_network(self, net: IPNetwork) -> str | None:
        """The ``ip`` identity key of every client in ``net``, or ``None`` when ``net``
        spans several keys (wider than an IPv4 address or an IPv6 prefix group)."""
        if isinstance(net, ipaddress.IPv4Network):
            return str(net.network_address) if net.prefixlen == 32 else None
        if net.prefixlen < min(self._v6_prefix, 128):
            return None
        return self.normalise(net.network_address)

    def _group(self, peer: str) -> str:
        cache = self._v6_cache
        hit = cache.get(peer)
        if hit is None:
            addr = _parse_ip(peer)
            hit = self.normalise(addr) if addr is not None else UNKNOWN_ADDRESS
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[peer] = hit
        return hit

    def _full(self, peer: str) -> str:
        cache = self._full_cache
        hit = cache.get(peer)
        if hit is None:
            addr = _parse_ip(peer)
            hit = str(addr) if addr is not None else UNKNOWN_ADDRESS
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[peer] = hit
        return hit

    # -- identity keys ----------------------------------------------------

    def digest(self, secret: str) -> str:
        """Keyed digest of a secret (32 hex characters)."""
        return hashlib.blake2b(
            secret.encode("utf-8", "surrogatepass"), key=self._hash_key, digest_size=16
        ).hexdigest()

    def api_key(self, info: RequestInfo) -> str | None:
        raw = info.api_key or info.headers.get(self._api_key_header)
        return self.digest(raw) if raw else None

    def part(self, kind: str, info: RequestInfo) -> str | None:
        """One identity component, or ``None`` when the request has none."""
        if kind == "ip":
            return self.client_ip(info)
        if kind == "user":
            return info.user or None
        if kind == "tenant":
            return info.tenant or self._claim(info, self._tenant_claim())
        if kind == "api_key":
            return self.api_key(info)
        if kind == "global":
            return ""
        if kind.startswith("header:"):
            value = info.headers.get(kind[7:])
            return self.digest(value) if value else None
        if kind.startswith("jwt:"):
            claim = self._claim(info, kind[4:])
            return self.digest(claim) if claim else None
        return None

    def key(self, kinds: tuple[str, ...], info: RequestInfo) -> Hashable | None:
        """The key of a (possibly composite) identity, or ``None`` when missing."""
        if len(kinds) == 1:
            return self.part(kinds[0], info)
        parts = []
        for kind in kinds:
            value = self.part(kind, info)
            if value is None:
                return None
            parts.append(value)
        return tuple(parts)

    def key_function(self, kinds: tuple[str, ...]) -> Callable[[RequestInfo], Hashable | None]:
        """A function computing the key of ``kinds``, specialised once per rule."""
        if kinds == ("ip",):
            return self.client_ip
        if kinds == ("user",):
            return _user
        if kinds == ("global",):
            return _global
        if len(kinds) == 1:
            kind = kinds[0]
            return lambda info: self.part(kind, info)
        return lambda info: self.key(kinds, info)

    def _tenant_claim(self) -> str | None:
        jwt = self.config.jwt
        return jwt.tenant_claim if jwt is not None else None

    @staticmethod
    def _claim(info: RequestInfo, claim: str | None) -> str | None:
        if claim is None or not info.claims:
            return None
        value = info.claims.get(claim)
        return None if value is None else str(value)
