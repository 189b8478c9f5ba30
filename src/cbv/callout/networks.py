"""Which addresses a callout may dial: only the global Internet, unless configured.

A forged sender can name any domain, and that domain's MX can point anywhere: without
this check cbv would probe the administrator's own LAN, or a host behind a NAT64 or 6to4
gateway, on command. The decision is made here and nowhere else, from explicit tables,
so that it does not change with the Python release (`ipaddress.is_global` has changed
between releases and knows nothing of the IPv6 forms that carry an IPv4 address).

The tables are the IANA IPv4 and IPv6 Special-Purpose Address Registries
(iana-ipv4-special-registry, iana-ipv6-special-registry), plus IPv4 multicast and the
IPv6 ranges outside global unicast 2000::/3. Every block of the registries is denied,
including the few marked "globally reachable" (anycast service addresses such as PCP,
TURN, AS112 and AMT): no mail exchanger lives there.

Every way of carrying an IPv4 address inside IPv6 is unwrapped first and the embedded
IPv4 address judged too: IPv4-mapped ::ffff:0:0/96 (judged as the IPv4 address it is),
IPv4-compatible ::/96, SIIT ::ffff:0:0:0/96, 6to4 2002::/16, Teredo 2001::/32 (server and
de-obfuscated client), NAT64 64:ff9b::/96 and 64:ff9b:1::/48. Apart from IPv4-mapped,
these transition prefixes are denied even when the embedded address is global: an MX
record never needs them, and they reach whatever the gateway reaches. An administrator
on a NAT64 network may open one in `security.allowed_target_networks`; the embedded IPv4
address must still pass.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

IPV4_DENIED: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "this network (RFC 791)"),
    ("10.0.0.0/8", "private-use (RFC 1918)"),
    ("100.64.0.0/10", "shared address space / CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927)"),
    ("172.16.0.0/12", "private-use (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation TEST-NET-1 (RFC 5737)"),
    ("192.31.196.0/24", "AS112-v4 (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private-use (RFC 1918)"),
    ("192.175.48.0/24", "direct delegation AS112 service (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("255.255.255.255/32", "limited broadcast (RFC 919)"),
    ("240.0.0.0/4", "reserved (RFC 1112)"),
)

IPV6_DENIED: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified address (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::ffff:0:0:0/96", "SIIT IPv4-translated (RFC 2765)"),
    ("::/96", "IPv4-compatible, deprecated (RFC 4291)"),
    ("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052)"),
    ("64:ff9b:1::/48", "NAT64 local-use prefix (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy IPv6 prefix (RFC 9780)"),
    ("2001::/32", "Teredo (RFC 4380)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    ("2620:4f:8000::/48", "direct delegation AS112 service (RFC 7534)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "segment routing SIDs (RFC 9602)"),
    ("fc00::/7", "unique local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local, deprecated (RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)

GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")

_IPV4_TABLE = tuple((ipaddress.IPv4Network(net), why) for net, why in IPV4_DENIED)
_IPV6_TABLE = tuple((ipaddress.IPv6Network(net), why) for net, why in IPV6_DENIED)

_COMPATIBLE = ipaddress.IPv6Network("::/96")
_SIIT = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_LOW_32_BITS = 0xFFFF_FFFF
_LOW_40_BITS = 0xFF_FFFF_FFFF


def _low_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & _LOW_32_BITS)


def _nat64_local_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """RFC 6052 places the IPv4 address by the operator's prefix length, which an address
    does not tell: a /48 prefix puts it in bits 48-63 and 72-87 and leaves the last 40 bits
    zero; otherwise read the /96 placement. The prefix itself is denied either way."""
    value = int(ip)
    if value & _LOW_40_BITS == 0:
        return ipaddress.IPv4Address((((value >> 64) & 0xFFFF) << 16) | ((value >> 40) & 0xFFFF))
    return _low_ipv4(ip)


def embedded_ipv4(ip: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """Every IPv4 address this IPv6 address carries, with the name of the embedding."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if ip in _COMPATIBLE and int(ip) > 1:
        found.append(("IPv4-compatible", _low_ipv4(ip)))
    if ip in _SIIT:
        found.append(("SIIT", _low_ipv4(ip)))
    if ip in _NAT64_WELL_KNOWN:
        found.append(("NAT64", _low_ipv4(ip)))
    if ip in _NAT64_LOCAL:
        found.append(("NAT64", _nat64_local_ipv4(ip)))
    if ip.sixtofour is not None:
        found.append(("6to4", ip.sixtofour))
    if ip.teredo is not None:
        server, client = ip.teredo
        found.append(("Teredo server", server))
        found.append(("Teredo client", client))
    return found


def _denied(ip: IPAddress) -> str | None:
    if isinstance(ip, ipaddress.IPv4Address):
        for net, why in _IPV4_TABLE:
            if ip in net:
                return why
        return None
    for net6, why in _IPV6_TABLE:
        if ip in net6:
            return why
    if ip not in GLOBAL_UNICAST_V6:
        return "not global unicast (outside 2000::/3)"
    return None


class TargetPolicy:
    """The one decision on whether an address may be dialled; every path asks it."""

    def __init__(self, allowed_networks: Iterable[str]) -> None:
        self._allowed: tuple[IPNetwork, ...] = tuple(
            ipaddress.ip_network(net, strict=False) for net in allowed_networks
        )
        # The same few MX addresses come back callout after callout: judge each once.
        self.why_forbidden = functools.lru_cache(maxsize=4096)(self._why_forbidden)

    def is_forbidden(self, ip_text: str) -> bool:
        return self.why_forbidden(ip_text) is not None

    def _is_allowed(self, ip: IPAddress) -> bool:
        return any(ip in net for net in self._allowed)

    def _why_forbidden(self, ip_text: str) -> str | None:
        """None when `ip_text` may be dialled, else why not, in a few words."""
        if "%" in ip_text:
            return "scoped address (zone index)"
        try:
            ip: IPAddress = ipaddress.ip_address(ip_text)
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if isinstance(ip, ipaddress.IPv6Address):
            for embedding, inner in embedded_ipv4(ip):
                if self._is_allowed(inner):
                    continue
                inner_why = _denied(inner)
                if inner_why is not None:
                    return f"{embedding} form of {inner}, {inner_why}"
        if self._is_allowed(ip):
            return None
        return _denied(ip)
