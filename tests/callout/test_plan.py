"""The planner's memory of a domain's plan: kept exactly as long as the DNS answers it was
made from are the ones the resolver's cache holds."""

from __future__ import annotations

import pytest

from cbv.callout import plan as plan_module
from cbv.callout.networks import TargetPolicy
from cbv.callout.plan import Planner, Target
from cbv.config import CalloutConfig, DnsConfig
from cbv.dns.resolver import DnspythonResolver
from cbv.model import Reason
from cbv.testing import FakeDNS
from tests.cache.helpers import FakeClock

LOOPBACK = ["127.0.0.0/8"]


def planner(dns: FakeDNS, clock: FakeClock, allowed: list[str] | None = None) -> Planner:
    resolver = DnspythonResolver(DnsConfig(nameservers=[dns.nameserver], timeout=1.0), clock)
    return Planner(CalloutConfig(helo_name="v.test"), resolver,
                   TargetPolicy(LOOPBACK if allowed is None else allowed))


def two_hosts(dns: FakeDNS, domain: str, preferences: tuple[int, int] = (10, 20),
              ttl: int = 300) -> None:
    dns.add_mx(domain, [(preferences[0], f"mx1.{domain}"), (preferences[1], f"mx2.{domain}")],
               ttl=ttl)
    dns.add_a(f"mx1.{domain}", "127.0.0.2", ttl=ttl)
    dns.add_a(f"mx2.{domain}", "127.0.0.3", ttl=ttl)


async def test_the_plan_is_known_while_its_answers_are_cached(fake_dns: FakeDNS) -> None:
    two_hosts(fake_dns, "example.test", ttl=300)
    clock = FakeClock()
    planning = planner(fake_dns, clock)
    assert planning.known("example.test") is None
    made = await planning.plan("example.test")
    assert made.targets == (Target("mx1.example.test", "127.0.0.2", 25),
                            Target("mx2.example.test", "127.0.0.3", 25))
    assert planning.known("example.test") is made
    clock.advance(301)
    assert planning.known("example.test") is None  # the TTL ran out: asked again
    queries = len(fake_dns.queries)
    remade = await planning.plan("example.test")
    assert remade.targets == made.targets and len(fake_dns.queries) > queries
    assert planning.known("example.test") is remade


async def test_one_host_answer_run_out_is_enough_to_plan_again(fake_dns: FakeDNS) -> None:
    fake_dns.add_mx("example.test", [(10, "mx1.example.test"), (20, "mx2.example.test")],
                    ttl=3600)
    fake_dns.add_a("mx1.example.test", "127.0.0.2", ttl=3600)
    fake_dns.add_a("mx2.example.test", "127.0.0.3", ttl=60)
    clock = FakeClock()
    planning = planner(fake_dns, clock)
    await planning.plan("example.test")
    clock.advance(61)
    assert planning.known("example.test") is None


async def test_hosts_of_equal_preference_are_shuffled_per_callout_not_remembered(
    fake_dns: FakeDNS,
) -> None:
    two_hosts(fake_dns, "example.test", preferences=(10, 10))
    planning = planner(fake_dns, FakeClock())
    firsts = {(await planning.plan("example.test")).targets[0].host for _ in range(64)}
    assert firsts == {"mx1.example.test", "mx2.example.test"}
    assert planning.known("example.test") is None


async def test_a_forbidden_plan_is_not_remembered(fake_dns: FakeDNS) -> None:
    two_hosts(fake_dns, "example.test")
    planning = planner(fake_dns, FakeClock(), allowed=[])
    made = await planning.plan("example.test")
    assert made.failure is not None and made.failure.reason is Reason.TARGET_FORBIDDEN
    assert planning.known("example.test") is None


async def test_the_oldest_plan_goes_first(fake_dns: FakeDNS,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plan_module, "PLANS_REMEMBERED", 2)
    for domain in ("a.test", "b.test", "c.test"):
        two_hosts(fake_dns, domain)
    planning = planner(fake_dns, FakeClock())
    for domain in ("a.test", "b.test", "c.test"):
        await planning.plan(domain)
    assert [planning.known(d) is not None for d in ("a.test", "b.test", "c.test")] == [
        False, True, True]
