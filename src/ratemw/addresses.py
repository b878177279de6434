"""Client addresses in one canonical form, for identities, lists and bans alike.

Every place that turns text into an address goes through here (docs/STYLE.md §17):
the identity resolver (a peer, a forwarded hop), the allow and deny lists, and the
``ip:`` bans of ``ratemw ban``, ``POST /v1/bans`` and ``limiter.ban()``. The
canonical form of an address drops an IPv6 zone (``%eth0``) and turns an IPv4-mapped
IPv6 address (``::ffff:198.51.100.8``, what a dual-stack socket reports for an IPv4
client) into the IPv4 address; a network inside ``::ffff:0:0/96`` becomes the IPv4
network it maps.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = [
    "LIST_KINDS",
    "IPAddress",
    "IPNetwork",
    "ban_network",
    "canonical",
    "key_network",
    "list_entry_problem",
    "parse_address",
    "parse_network",
    "shown_network",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: the kinds of ``kind:value`` list entries (anything else must be an address or network)
LIST_KINDS = ("ip", "user", "tenant", "api_key", "header")
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical(addr: IPAddress) -> IPAddress:
    """``addr`` without its zone, an IPv4-mapped IPv6 address as IPv4."""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr.scope_id is not None:
            return ipaddress.IPv6Address(int(addr))
    return addr


def parse_address(text: str) -> IPAddress | None:
    """The canonical address of a peer or a forwarded hop, or ``None``.

    Accepts ``192.0.2.1``, ``192.0.2.1:8080``, ``2001:db8::1``, ``[2001:db8::1]:4711``
    (RFC 7239 ``Forwarded``), ``[::1]`` and zoned addresses.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:  # "192.0.2.1:8080"
        text = text.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return canonical(addr)


def parse_network(text: str, *, strict: bool = True) -> IPNetwork:
    """The canonical network of an address (a /32 or /128) or a ``CIDR`` text.

    Raises ``ValueError`` with a reason that never repeats ``text`` unless it parsed
    (it may be a secret typed with the wrong kind): not an address or network, or
    (``strict``) a network with host bits set, which is ambiguous.
    """
    address, slash, bits = text.strip().partition("/")
    address = address.strip()
    if address.startswith("[") and address.endswith("]"):
        address = address[1:-1]
    try:
        written = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError("not an IPv4 or IPv6 address or network") from None
    if not slash:
        return ipaddress.ip_network(canonical(written))
    if not (bits.isascii() and bits.isdigit()):
        raise ValueError("not an IPv4 or IPv6 address or network")
    prefix = int(bits)
    if isinstance(written, ipaddress.IPv6Address):
        if written.ipv4_mapped is not None and prefix >= 96:
            # ::ffff:198.51.100.0/120 is 198.51.100.0/24: such clients are read as IPv4.
            return _network(written.ipv4_mapped, prefix - 96, strict)
        return _network(ipaddress.IPv6Address(int(written)), prefix, strict)
    return _network(written, prefix, strict)


def _network(addr: IPAddress, prefix: int, strict: bool) -> IPNetwork:
    if prefix > addr.max_prefixlen:
        raise ValueError(f"a prefix longer than /{addr.max_prefixlen}")
    net = ipaddress.ip_network((addr, prefix), strict=False)
    if strict and net.network_address != addr:
        raise ValueError(
            f"{addr}/{prefix} has host bits set, which is ambiguous: write {net} for the "
            f"network or {addr} for the address"
        )
    return net


def shown_network(net: IPNetwork) -> str:
    """An address for a /32 or /128, else the network, as operators see it."""
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return str(net)


def _never_a_client(net: IPNetwork) -> str | None:
    first = net.network_address
    if net.prefixlen == net.max_prefixlen and first.is_unspecified:
        return f"{first} is the unspecified address, never a client's"
    if net.is_multicast:
        return f"{shown_network(net)} is multicast, never a client's address"
    if net == ipaddress.IPv4Network("255.255.255.255/32"):
        return "255.255.255.255 is the broadcast address, never a client's"
    return None


def ban_network(text: str) -> IPNetwork:
    """The clients an ``ip:`` ban names: an address, or a network of clients.

    Raises ``ValueError`` (a reason fit to show) for text that is not an address or
    network, a network with host bits set, one that cannot be a client (unspecified,
    multicast, broadcast) and ``/0`` (every client: use a brownout or the kill switch).
    """
    net = parse_network(text)
    bad = _never_a_client(net)
    if bad:
        raise ValueError(bad)
    if net.prefixlen == 0:
        raise ValueError(f"{net} names every client: use a brownout or the kill switch")
    return net


def list_entry_problem(entry: str) -> str | None:
    """Why an allow/deny entry is invalid or can never match, or ``None`` when fine.

    Lists compare a client's full address, whatever ``ipv6_prefix`` groups it by, so an
    address or network entry matches exactly the addresses it contains. Refused: empty
    entries and values, unknown kinds, text that is not an address, a network with host
    bits set (ambiguous: the address or its network?), addresses that are never a
    client's (unspecified, multicast, broadcast), and bad ``header:NAME:VALUE``.
    """
    if not entry.strip():
        return "an empty entry"
    kind, sep, value = entry.partition(":")
    if sep and kind in LIST_KINDS:
        if not value.strip():
            return f"{kind}: with an empty value never matches"
        if kind == "ip":
            return _address_problem(value)
        if kind == "header":
            name, sep, wanted = value.partition(":")
            if not sep or not name or not set(name) <= _TOKEN:
                return "expected header:NAME:VALUE"
            if not wanted.strip():
                return "header:NAME: with an empty value never matches"
        return None
    problem = _address_problem(entry)
    if problem == "not an IPv4 or IPv6 address or network":
        kinds = ", ".join(LIST_KINDS)
        if sep and not any(c in kind for c in ".[") and not _looks_v6(entry):
            return f"unknown kind {kind!r} (kinds: {kinds})"
        return f"neither an IP address, a network nor kind:value (kinds: {kinds})"
    return problem


def _looks_v6(text: str) -> bool:
    return text.count(":") >= 2


def _address_problem(text: str) -> str | None:
    try:
        net = parse_network(text)
    except ValueError as exc:
        return str(exc)
    return _never_a_client(net)


@lru_cache(maxsize=4096)
def key_network(key: str) -> IPNetwork | None:
    """The network an ``ip`` identity key stands for (an address or a group), cached."""
    try:
        return ipaddress.ip_network(key, strict=False)
    except ValueError:
        return None
