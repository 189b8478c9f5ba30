"""The egresses a configuration names, ready to dial through."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from cbv.config import CalloutConfig
from cbv.egress.settings import (
    DEFAULT_EGRESS,
    PROXY_EGRESS,
    EgressConfig,
    ProxyAddress,
    parse_proxy_url,
)


@dataclass(frozen=True, slots=True)
class Egress:
    name: str
    helo_name: str
    sources: tuple[str, ...] = ()  # at most one address per family; () is the system's choice
    proxy: ProxyAddress | None = None
    public_address: str = ""  # what mail servers see, when known
    daily_budget: int | None = None
    per_minute: float | None = None

    def source_for(self, ip: str) -> str | None:
        """The source address of `ip`'s family; None when this egress binds no address."""
        if not self.sources:
            return None
        family = ipaddress.ip_address(ip).version
        for source in self.sources:
            if ipaddress.ip_address(source).version == family:
                return source
        raise OSError(f"egress {self.name} has no IPv{family} source address")

    @property
    def seen_as(self) -> str:
        """The address mail servers see, or "" when only the proxy's operator knows it."""
        if self.public_address:
            return self.public_address
        return self.sources[0] if self.sources and self.proxy is None else ""

    def __str__(self) -> str:
        if self.proxy is not None:
            return f"{self.name} ({self.proxy})"
        return f"{self.name} ({', '.join(self.sources) or 'direct'})"


def default_sources(table: EgressConfig, config: CalloutConfig) -> tuple[str, ...]:
    """An egress naming neither a source address nor a proxy leaves from [callout]'s."""
    if table.proxy or not config.source_address:
        return ()
    return (config.source_address,)


def egresses_from_config(config: CalloutConfig) -> tuple[Egress, ...]:
    """The [[callout.egress]] tables; without any, one egress as [callout] describes it."""
    if config.proxy:
        return (Egress(PROXY_EGRESS, config.helo_name, proxy=parse_proxy_url(config.proxy)),)
    if not config.egress:
        sources = (config.source_address,) if config.source_address else ()
        return (Egress(DEFAULT_EGRESS, config.helo_name, sources),)
    return tuple(
        Egress(
            name=table.name,
            helo_name=table.helo_name or config.helo_name,
            sources=tuple(table.source_address) or default_sources(table, config),
            proxy=table.proxy_address,
            public_address=table.public_address,
            daily_budget=table.daily_budget,
            per_minute=table.per_minute,
        )
        for table in config.egress
    )
