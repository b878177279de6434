"""Allow and deny lists: which requests an entry names, by address, network or identity.

Addresses are compared with the client's full canonical address (never its IPv6
prefix group); secrets (API keys) are compared by their keyed digest, so a list may
hold the raw key or the digest ``ratemw explain`` prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ratemw.addresses import LIST_KINDS, IPNetwork, parse_address, parse_network
from ratemw.identity.resolver import CACHE_LIMIT

if TYPE_CHECKING:
    from ratemw.identity.resolver import IdentityResolver
    from ratemw.request import RequestInfo

__all__ = ["AccessList"]


class AccessList:
    """An allow or deny list: addresses, networks and ``kind:value`` entries.

    Kinds: ``ip``, ``user``, ``tenant``, ``api_key`` (compared by digest, so
    the list may hold the raw key or its digest as printed by ``ratemw explain``)
    and ``header:NAME:VALUE``. Addresses and networks are compared with the client's
    full address, never its IPv6 prefix group: ``2001:db8::5`` is that address only.
    Entries ``ratemw check`` refuses (:func:`ratemw.addresses.list_entry_problem`) are
    skipped here, except a network with host bits set, read as its network.
    """

    __slots__ = ("_addresses", "_headers", "_net_cache", "_networks", "_values", "empty")

    def __init__(self, entries: Iterable[str], resolver: IdentityResolver) -> None:
        addresses: set[str] = set()
        networks: list[IPNetwork] = []
        values: dict[str, set[str]] = {}
        self_headers: list[tuple[str, str]] = []
        for entry in entries:
            kind, sep, value = entry.partition(":")
            if sep and kind in LIST_KINDS:
                if kind == "ip":
                    entry = value
                elif kind == "header":  # header:NAME:VALUE
                    name, _, wanted = value.partition(":")
                    self_headers.append((name.strip().lower(), wanted.strip()))
                    continue
                else:
                    values.setdefault(kind, set()).add(value)
                    if kind == "api_key":
                        values[kind].add(resolver.digest(value))
                    continue
            try:
                net = parse_network(entry, strict=False)
            except ValueError:
                continue
            if net.prefixlen == net.max_prefixlen:
                addresses.add(str(net.network_address))
            else:
                networks.append(net)
        self._addresses = frozenset(addresses)
        self._networks = tuple(networks)
        self._values = {k: frozenset(v) for k, v in values.items()}
        self._headers = tuple(self_headers)
        self._net_cache: dict[str, bool] = {}
        self.empty = not (addresses or networks or values or self_headers)

    def contains(self, info: RequestInfo, address: str, resolver: IdentityResolver) -> bool:
        """Whether the request's client or identity is listed; ``address`` is the
        client's full address (:meth:`IdentityResolver.client_address`, never grouped)."""
        if address in self._addresses or (self._networks and self._in_networks(address)):
            return True
        values = self._values
        if values:
            if info.user is not None and info.user in values.get("user", ()):
                return True
            tenant = resolver.part("tenant", info) if "tenant" in values else None
            if tenant is not None and tenant in values["tenant"]:
                return True
            if "api_key" in values:
                digest = resolver.api_key(info)
                if digest is not None and digest in values["api_key"]:
                    return True
        return any(info.headers.get(name) == wanted for name, wanted in self._headers)

    def _in_networks(self, address: str) -> bool:
        cache = self._net_cache
        hit = cache.get(address)
        if hit is None:
            addr = parse_address(address)
            hit = addr is not None and any(addr in net for net in self._networks)
            if len(cache) >= CACHE_LIMIT:
                cache.clear()
            cache[address] = hit
        return hit
