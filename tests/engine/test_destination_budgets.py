"""Budgets per MX address, network and provider: keys, all-or-nothing reservations, and
the peek that schedulers use."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from cbv.callout.plan import Target
from cbv.config import LimitsConfig, config_from_dict
from cbv.engine.budgets import Allowance, LocalDestinationBudget, allowances
from cbv.engine.gcra import Gcra
from cbv.engine.verifier import Verifier
from cbv.model import Reason
from cbv.providers import network_of, provider_of
from cbv.testing import MXScript
from tests.world import World


@pytest.mark.parametrize(("host", "provider"), [
    ("aspmx.l.google.com", "google.com"),
    ("alt1.aspmx.l.google.com", "google.com"),
    ("ALT2.ASPMX.L.GOOGLE.COM.", "google.com"),
    ("example-com.mail.protection.outlook.com", "outlook.com"),
    ("mx1.mail.example.co.uk", "example.co.uk"),
    ("mx.tenant.github.io", "tenant.github.io"),  # a private suffix of the list
    ("192.0.2.25", "192.0.2.25"),  # an address literal stands for itself
    ("2001:db8::25", "2001:db8::25"),
])
def test_the_provider_is_the_registrable_domain_of_the_mx_name(host: str, provider: str) -> None:
    assert provider_of(host) == provider


@pytest.mark.parametrize(("ip", "network"), [
    ("192.0.2.77", "192.0.2.0/24"),
    ("127.0.0.209", "127.0.0.0/24"),
    ("2001:db8:1:2::25", "2001:db8:1::/48"),
])
def test_the_network_is_the_slash_24_or_slash_48(ip: str, network: str) -> None:
    assert network_of(ip) == network


def test_a_session_counts_against_its_address_network_and_provider() -> None:
    config = LimitsConfig(provider_overrides={"google.com": 600})
    google = allowances(Target("alt1.aspmx.l.google.com", "192.0.2.27", 25), config)
    assert [a.name for a in google] == ["ip:192.0.2.27", "net:192.0.2.0/24", "provider:google.com"]
    assert google[2].gcra == Gcra.per_minute(600, config.provider_burst)
    literal = allowances(Target("192.0.2.27", "192.0.2.27", 25), config)
    assert [a.name for a in literal] == ["ip:192.0.2.27", "net:192.0.2.0/24"]


def test_provider_overrides_are_normalised_and_checked() -> None:
    config = config_from_dict({"limits": {"provider_overrides": {"Google.COM.": 120}}})
    assert config.limits.provider_rate("google.com") == 120
    with pytest.raises(Exception, match="must be above 0"):
        config_from_dict({"limits": {"provider_overrides": {"google.com": 0}}})


async def test_a_spent_allowance_takes_nothing_from_the_others() -> None:
    budget = LocalDestinationBudget(max_wait=0)
    roomy = Allowance("ip:192.0.2.1", "MX address 192.0.2.1", Gcra.per_minute(60, 10))
    tight = Allowance("provider:example.com", "provider example.com", Gcra.per_minute(1, 1))
    assert await budget.reserve([roomy, tight]) == 0
    assert await budget.reserve([roomy, tight]) == tight
    free_before = await budget.free_in([roomy])
    for _ in range(9):  # the refusal above took nothing from `roomy`: 9 of its 10 remain
        assert await budget.reserve([roomy]) == 0
    assert free_before == 0
    assert await budget.reserve([roomy]) == roomy


async def test_free_in_tells_when_a_budget_frees_without_taking_from_it() -> None:
    budget = LocalDestinationBudget(max_wait=10)
    one_a_second = Allowance("ip:192.0.2.1", "MX address 192.0.2.1", Gcra.per_minute(60, 1))
    assert await budget.free_in([one_a_second]) == 0
    assert await budget.reserve([one_a_second]) == 0
    waiting = await budget.free_in([one_a_second])
    assert 0.9 < waiting <= 1.0
    assert 0.9 < await budget.free_in([one_a_second]) <= waiting  # peeking took nothing


async def test_the_gate_tells_a_scheduler_when_a_destination_frees(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(limits={"ip_burst": 1, "ip_per_minute": 6})
    target = Target("mx1.example.test", "127.0.0.2", config.callout.port)
    async with Verifier(config) as verifier:
        assert await verifier.gate.free_in(target) == 0
        await verifier.verify("someone@example.test")
        assert 9 < await verifier.gate.free_in(target) <= 10


async def test_many_domains_on_one_mx_address_share_its_budget(world: World) -> None:
    """The per-domain budget alone let this through: 100 domains, one victim address."""
    farm = await world.mx("victim.test", {"127.0.0.2": MXScript(catch_all=True)})
    for n in range(100):
        world.dns.add_mx(f"forged{n}.test", [(10, f"mx.forged{n}.test")])
        world.dns.add_a(f"mx.forged{n}.test", "127.0.0.2")
    config = world.config(limits={"ip_burst": 3, "ip_per_minute": 60, "max_wait": 0})
    async with Verifier(config) as verifier:
        verdicts = await asyncio.gather(*(verifier.verify(f"someone@forged{n}.test")
                                          for n in range(100)))
    reasons = Counter(v.reason for v in verdicts)
    assert farm.servers["127.0.0.2"].connections == reasons[Reason.ACCEPTED] <= 4, reasons
    assert reasons[Reason.RATE_LIMITED] == 100 - reasons[Reason.ACCEPTED], reasons
    limited = next(v for v in verdicts if v.reason is Reason.RATE_LIMITED)
    assert limited.detail is not None and "MX address 127.0.0.2" in limited.detail
    assert limited.ip == "127.0.0.2"


async def test_two_mx_names_of_one_provider_share_its_budget(world: World) -> None:
    farm = await world.mx("a.test", {"127.0.0.2": MXScript(catch_all=True)})
    world.dns.add_a("aspmx.l.provider.test", "127.0.0.2")
    world.dns.add_a("alt1.aspmx.l.provider.test", "127.0.0.3")
    world.dns.add_mx("one.test", [(10, "aspmx.l.provider.test")])
    world.dns.add_mx("two.test", [(10, "alt1.aspmx.l.provider.test")])
    config = world.config(limits={"provider_burst": 1, "provider_per_minute": 1, "max_wait": 0})
    async with Verifier(config) as verifier:
        first = await verifier.verify("a@one.test")
        second = await verifier.verify("b@two.test")
    assert first.reason is Reason.ACCEPTED
    assert second.reason is Reason.RATE_LIMITED
    assert second.detail is not None and "provider provider.test" in second.detail
    assert farm.servers["127.0.0.2"].connections == 1
