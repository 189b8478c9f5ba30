"""Who stands behind an MX address: its network and its provider, the units that budgets
beyond the single address count against.

The provider is the MX host name's registrable domain by the Public Suffix List bundled
with `publicsuffixlist` (read once, never fetched), so aspmx.l.google.com and
alt1.aspmx.l.google.com are both google.com. A host given as an address literal has no
provider but itself.
"""

from __future__ import annotations

import functools
import ipaddress

from publicsuffixlist import PublicSuffixList

IPV4_NETWORK_BITS = 24
IPV6_NETWORK_BITS = 48
PROVIDERS_REMEMBERED = 4096


@functools.cache
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


def read_suffix_list() -> None:
    """Read the bundled list now, not at the first callout: parsing it takes 65-75 ms of
    CPU here, and the first callout would hold the event loop, and every session and
    request in it, still meanwhile. A daemon calls this as it starts."""
    _suffixes()


@functools.lru_cache(maxsize=PROVIDERS_REMEMBERED)
def provider_of(host: str) -> str:
    """The registrable domain of an MX host name, lower case, without the root dot."""
    name = host.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return _suffixes().privatesuffix(name) or name
    return name


@functools.lru_cache(maxsize=PROVIDERS_REMEMBERED)
def network_of(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) that holds `ip`, as CIDR text."""
    address = ipaddress.ip_address(ip)
    bits = IPV4_NETWORK_BITS if address.version == 4 else IPV6_NETWORK_BITS
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))
