"""Which addresses a callout may dial: only the global Internet, unless configured.

A forged sender can name any domain, and that domain's MX can point anywhere:
without this check cbv would probe the administrator's own LAN on command.
"""

from __future__ import annotations

import functools
import ipaddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetPolicy:
    def __init__(self, allowed_networks: list[str]) -> None:
        self._allowed = [ipaddress.ip_network(net, strict=False) for net in allowed_networks]
        # The same few MX addresses come back callout after callout: parse each once.
        self.is_forbidden = functools.lru_cache(maxsize=4096)(self._is_forbidden)

    def _is_forbidden(self, ip_text: str) -> bool:
        try:
            ip: IPAddress = ipaddress.ip_address(ip_text.split("%", 1)[0])
        except ValueError:
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if any(ip in net for net in self._allowed):
            return False
        return not ip.is_global or ip.is_multicast
