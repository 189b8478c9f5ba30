"""A small world for engine tests: a fake DNS zone and scripted MX hosts on 127.0.0.x."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest_asyncio

from cbv.config import Config, config_from_dict
from cbv.engine.verifier import Verifier
from cbv.model import Verdict
from cbv.testing import FakeDNS, MXFarm, MXScript, ScriptedMX, start_farm

HELO = "verifier.cbv.test"
# Every test MX is on 127.0.0.0/24: budgets wide enough that only tests of limits meet them.
ROOMY_LIMITS = {"domain_burst": 1000, "ip_burst": 1000, "network_burst": 10_000,
                "provider_burst": 1000}


def make_config(nameserver: str, port: int, **sections: dict[str, Any]) -> Config:
    """Short timeouts, loopback allowed, the fake DNS; sections override per test."""
    data: dict[str, dict[str, Any]] = {
        "dns": {"nameservers": [nameserver], "timeout": 2.0},
        "callout": {
            "port": port,
            "helo_name": HELO,
            "connect_timeout": 2.0,
            "command_timeout": 2.0,
            "total_timeout": 6.0,
        },
        "security": {"allowed_target_networks": ["127.0.0.0/8"]},
        "cache": {"url": "memory://"},
        "limits": dict(ROOMY_LIMITS),
    }
    for name, values in sections.items():
        data.setdefault(name, {}).update(values)
    return config_from_dict(data)


@dataclass
class World:
    dns: FakeDNS
    farms: list[MXFarm] = field(default_factory=list)

    async def mx(self, domain: str, scripts: Mapping[str, MXScript], prefs: list[int] | None = None
                 ) -> MXFarm:
        """Start hosts for `domain`, publish them as MX mx1..mxN in order (pref 10, 20, ...)."""
        farm = await start_farm(scripts)
        self.farms.append(farm)
        records = []
        for n, ip in enumerate(scripts, start=1):
            name = f"mx{n}.{domain}"
            self.dns.add_a(name, ip)
            records.append(((prefs[n - 1] if prefs else n * 10), name))
        self.dns.add_mx(domain, records)
        return farm

    def server(self, ip: str) -> ScriptedMX:
        for farm in self.farms:
            if ip in farm.servers:
                return farm.servers[ip]
        raise KeyError(ip)

    def config(self, port: int | None = None, /, **sections: dict[str, Any]) -> Config:
        chosen = port if port is not None else (self.farms[-1].port if self.farms else 25)
        return make_config(self.dns.nameserver, chosen, **sections)

    def toml(self, port: int, callout: str = "") -> str:
        """This world as the head of a cbv.toml (the fake DNS, the MX port, loopback
        allowed); `callout` adds lines to [callout], callers append their own tables."""
        return f"""
[dns]
nameservers = ["{self.dns.nameserver}"]
[callout]
port = {port}
helo_name = "{HELO}"
{callout}
[security]
allowed_target_networks = ["127.0.0.0/8"]
"""

    async def verify(self, address: str, port: int | None = None,
                     **sections: dict[str, Any]) -> Verdict:
        async with Verifier(self.config(port, **sections)) as verifier:
            return await verifier.verify(address, transcript=True)


@pytest_asyncio.fixture
async def world(fake_dns: FakeDNS) -> AsyncIterator[World]:
    state = World(fake_dns)
    yield state
    for farm in state.farms:
        await farm.stop()
