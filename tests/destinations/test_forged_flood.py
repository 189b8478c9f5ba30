"""Never a weapon: forged senders over hundreds of domains whose MX records all name one
victim address, or one victim network, through the policy listener. Sessions counted at
the scripted MX hosts stay within the destination budgets (docs/security.md). What is
tested is the engine's limits, so these run on one event loop, not on each the daemon
supports (tests/servers does that).

The floods offer many times what the budgets allow: 5,000 senders over 500 forged
domains, each domain a session of its own (nothing learnt at one domain answers for
another), asked in 7-9 s on a quiet machine, in which one address's budget (3 at once,
then one a second) lets at most 13 sessions through and one network's (10 at once, then
two a second) 29: about 40x and 17x fewer than the 500 offered. A loaded machine takes
longer and is allowed more, but still a small share."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from cbv.config import LimitsConfig
from cbv.testing import MXFarm, MXScript
from tests.destinations.flood import (
    DEFAULT_BUDGETS,
    REFUSAL,
    UNLIMITED,
    VICTIM,
    VICTIM_NETWORK,
    Flood,
    bound,
    domains_naming,
    flood,
    forged_domains,
    senders,
    sessions,
    victims,
)
from tests.servers.clients import running, server_config
from tests.world import World

SENDERS, DOMAINS = 5_000, 500


async def flood_through_policy(world: World, ips: Sequence[str]
                               ) -> tuple[MXFarm, LimitsConfig, Flood]:
    """SENDERS forged senders over DOMAINS domains whose MX records name `ips` (catch-all
    hosts), asked of one daemon with the default budgets; every one answered."""
    farm = await victims(world, ips, MXScript(catch_all=True))
    domains = forged_domains(world, DOMAINS, ips)
    config = server_config(world, farm, limits=DEFAULT_BUDGETS)
    async with running(config) as daemon:
        result = await flood([daemon.addresses()["policy"]], senders(domains, SENDERS))
    assert sum(result.actions.values()) == SENDERS
    return farm, config.limits, result


async def test_a_flood_over_many_domains_on_one_mx_costs_it_only_its_budget(
    world: World,
) -> None:
    farm, limits, result = await flood_through_policy(world, [VICTIM])
    opened = sessions(farm)
    assert 0 < opened <= bound(limits.ip_burst, limits.ip_per_minute, result.seconds)
    answered_in_sessions = len(farm.servers[VICTIM].rcpts) - opened  # less one probe each
    from_facts = result.actions["DUNNO"] - answered_in_sessions
    print(f"one MX: {SENDERS} requests in {result.seconds:.1f} s -> {opened} sessions; "
          f"{from_facts} answered from catch-all facts; {dict(result.actions)}")
    assert result.actions["DEFER_IF_PERMIT"] >= SENDERS - opened - from_facts


async def test_a_flood_over_two_hundred_addresses_of_one_network_costs_it_its_budget(
    world: World,
) -> None:
    farm, limits, result = await flood_through_policy(world, VICTIM_NETWORK)
    opened = sessions(farm)
    print(f"one /24: {SENDERS} requests in {result.seconds:.1f} s -> {opened} sessions over "
          f"{sum(1 for s in farm.servers.values() if s.connections)} addresses")
    assert 0 < opened <= bound(limits.network_burst, limits.network_per_minute, result.seconds)


async def test_a_refusing_mx_gets_at_most_three_connections_for_forty_domains(
    world: World,
) -> None:
    farm = await victims(world, [VICTIM], MXScript(banner=REFUSAL))
    domains = domains_naming(world, 40, "mx.victim.test", VICTIM)
    config = server_config(world, farm, limits=DEFAULT_BUDGETS)
    async with running(config) as daemon:
        first = await flood([daemon.addresses()["policy"]], senders(domains, 40))
        again = await flood([daemon.addresses()["policy"]], senders(domains, 40))
    # unknown (nothing against the sender) or, past the address's burst, deferred
    assert set(first.actions) <= {"DUNNO", "DEFER_IF_PERMIT"}
    assert again.actions == {"DUNNO": 40}  # cooling: unknown, not dialled
    assert 1 <= sessions(farm) <= 3


@pytest.mark.parametrize(("recheck", "expected"), [(False, 100), (True, 1_000)])
async def test_catch_all_facts_spare_a_session_per_sender(
    world: World, recheck: bool, expected: int
) -> None:
    """Budgets wide open, so only the facts decide: 1,000 senders over 100 catch-all
    domains cost one session per domain, or one per sender with recheck_catch_all."""
    farm = await victims(world, [VICTIM], MXScript(catch_all=True))
    domains = forged_domains(world, 100, [VICTIM])
    config = server_config(world, farm, callout={"recheck_catch_all": recheck},
                           limits=UNLIMITED)
    async with running(config) as daemon:
        result = await flood([daemon.addresses()["policy"]], senders(domains, 1_000))
    assert result.actions == {"DUNNO": 1_000}
    print(f"recheck_catch_all={recheck}: 1000 senders over 100 catch-all domains -> "
          f"{sessions(farm)} sessions in {result.seconds:.1f} s")
    assert sessions(farm) == expected
