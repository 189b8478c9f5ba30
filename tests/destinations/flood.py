"""Forged-sender floods through the policy listener: many domains whose MX records all
name one victim (or one victim network), asked by many Postfix-like connections."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cbv.config import LimitsConfig
from cbv.testing import MXFarm, MXScript, Reply, start_farm
from tests.servers.clients import PolicyClient
from tests.world import World

CLIENTS = 50  # Postfix smtpd processes asking at once
DEFAULTS = LimitsConfig()
# The destination budgets at their defaults; a short wait keeps the run bounded in time.
DEFAULT_BUDGETS: dict[str, Any] = {
    "ip_burst": DEFAULTS.ip_burst, "network_burst": DEFAULTS.network_burst,
    "provider_burst": DEFAULTS.provider_burst, "max_wait": 0.2,
}
UNLIMITED = {f"{unit}_per_minute": 1e6 for unit in ("domain", "ip", "network", "provider")}
VICTIM = "127.0.0.2"
VICTIM_NETWORK = [f"127.0.0.{n}" for n in range(10, 210)]  # 200 addresses in 127.0.0.0/24
REFUSAL = Reply(554, "5.7.1 Service unavailable; your IP is on our blocklist")


@dataclass(frozen=True)
class Flood:
    """What one flood asked, what it got, how long it took."""

    actions: Counter[str]  # first word of each answer
    seconds: float


def forged_domains(world: World, count: int, ips: Sequence[str]) -> list[str]:
    """`count` domains, each with its own MX name; the MX addresses go round `ips`."""
    domains = [f"forged{n}.test" for n in range(count)]
    for n, domain in enumerate(domains):
        world.dns.add_mx(domain, [(10, f"mx.{domain}")])
        world.dns.add_a(f"mx.{domain}", ips[n % len(ips)])
    return domains


def domains_naming(world: World, count: int, host: str, ip: str) -> list[str]:
    """`count` domains whose MX records all name one victim host, `host` at `ip`."""
    world.dns.add_a(host, ip)
    domains = [f"forged{n}.test" for n in range(count)]
    for domain in domains:
        world.dns.add_mx(domain, [(10, host)])
    return domains


async def victims(world: World, ips: Sequence[str], script: MXScript) -> MXFarm:
    farm = await start_farm(dict.fromkeys(ips, script))
    world.farms.append(farm)
    return farm


def senders(domains: Sequence[str], total: int) -> list[str]:
    """`total` different senders, spread evenly over `domains`, the domains interleaved."""
    return [f"forged{n}@{domains[n % len(domains)]}" for n in range(total)]


async def flood(policy_addresses: Sequence[str], forged: Sequence[str]) -> Flood:
    """Ask about every sender once, CLIENTS connections at a time, spread over the daemons
    whose policy listeners are given."""
    actions: Counter[str] = Counter()
    started = time.monotonic()

    async def client(number: int) -> None:
        connection = await PolicyClient.connect(policy_addresses[number % len(policy_addresses)])
        for sender in forged[number::CLIENTS]:
            actions[(await connection.ask(sender)).split()[0]] += 1
        await connection.close()

    await asyncio.gather(*(client(n) for n in range(CLIENTS)))
    return Flood(actions, time.monotonic() - started)


def sessions(farm: MXFarm) -> int:
    return sum(server.connections for server in farm.servers.values())


def bound(burst: int, per_minute: float, seconds: float) -> int:
    """The most sessions a GCRA budget lets through in `seconds`."""
    return burst + int(per_minute * seconds / 60) + 1
