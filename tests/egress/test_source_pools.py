"""Egresses bound to their own addresses on 127.0.0.x: who dials, with which HELO, and
what happens when hosts refuse an egress as blocked or listed."""

from __future__ import annotations

from typing import Any

import pytest

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import MXScript, Reply, start_farm
from tests.world import World

EGRESSES: list[dict[str, Any]] = [
    {"name": "one", "source_address": "127.0.0.51", "helo_name": "one.verifier.test"},
    {"name": "two", "source_address": "127.0.0.52", "helo_name": "two.verifier.test"},
]
BLOCKED = Reply(554, "5.7.1 Service unavailable; client host blocked using zen.spamhaus.org")


async def domains(world: World, scripts: dict[str, tuple[str, MXScript]]) -> None:
    """One host per domain (domain -> (ip, script)), all on the farm's one port."""
    farm = await start_farm({ip: script for ip, script in scripts.values()})
    world.farms.append(farm)
    for domain, (ip, _) in scripts.items():
        world.dns.add_a(f"mx.{domain}", ip)
        world.dns.add_mx(domain, [(10, f"mx.{domain}")])


def sessions(world: World, ip: str) -> list[tuple[str, str]]:
    """(source address, EHLO line) of each session the host saw."""
    return [(s.peer[0], s.commands[0]) for s in world.server(ip).log]


async def test_each_egress_dials_from_its_own_address_with_its_own_helo(world: World) -> None:
    await domains(world, {"a.test": ("127.0.0.2", MXScript(catch_all=True)),
                          "b.test": ("127.0.0.3", MXScript(catch_all=True))})
    callout = {"egress": EGRESSES, "egress_routes": {"a.test": "one", "*": "two"}}
    async with Verifier(world.config(callout=callout)) as verifier:
        verdicts = await verifier.verify_many(["x@a.test", "x@b.test"])
    assert [v.result for v in verdicts] == [Result.PASS, Result.PASS]
    assert sessions(world, "127.0.0.2") == [("127.0.0.51", "EHLO one.verifier.test")]
    assert sessions(world, "127.0.0.3") == [("127.0.0.52", "EHLO two.verifier.test")]


async def test_a_pool_shares_the_traffic_in_turn(world: World) -> None:
    await world.mx("a.test", {"127.0.0.2": MXScript(catch_all=True)})
    callout = {"egress": EGRESSES, "egress_routes": {"*": ["one", "two"]}}
    async with Verifier(world.config(callout=callout)) as verifier:
        for n in range(4):
            await verifier.verify(f"user{n}@a.test", use_cache=False)
    assert [peer for peer, _ in sessions(world, "127.0.0.2")] == [
        "127.0.0.51", "127.0.0.52", "127.0.0.51", "127.0.0.52"]


async def test_an_egress_blocked_by_several_hosts_rests_and_the_next_takes_over(
    world: World
) -> None:
    blocked = MXScript(banner=BLOCKED)
    await domains(world, {"one.test": ("127.0.0.2", blocked), "two.test": ("127.0.0.3", blocked),
                          "three.test": ("127.0.0.4", blocked),
                          "fine.test": ("127.0.0.9", MXScript(catch_all=True))})
    callout = {"egress": EGRESSES, "egress_routes": {"*": ["one", "two"]},
               "egress_rest_after": 3}
    async with Verifier(world.config(callout=callout)) as verifier:
        for domain in ("one.test", "two.test", "three.test"):
            verdict = await verifier.verify(f"x@{domain}", use_cache=False)
            assert verdict.reason is Reason.CLIENT_BLOCKED
            verdict = await verifier.verify(f"x@{domain}", use_cache=False)  # through "two"
        assert verifier.egresses.state("one").value == "resting"
        assert verifier.egresses.state("two").value == "resting"
        verdict = await verifier.verify("x@fine.test", use_cache=False)
    assert verdict.reason is Reason.RATE_LIMITED
    assert verdict.detail is not None and "one resting" in verdict.detail
    assert world.server("127.0.0.9").connections == 0


async def test_a_resting_egress_hands_its_traffic_to_the_next(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = MXScript(banner=BLOCKED)
    await domains(world, {"one.test": ("127.0.0.2", blocked), "two.test": ("127.0.0.3", blocked),
                          "fine.test": ("127.0.0.9", MXScript(catch_all=True))})
    callout = {"egress": EGRESSES, "egress_routes": {"*": ["one", "two"]},
               "egress_rest_after": 2}
    async with Verifier(world.config(callout=callout)) as verifier:
        await verifier.verify("x@one.test", use_cache=False)  # one
        await verifier.verify("y@fine.test", use_cache=False)  # two
        await verifier.verify("x@two.test", use_cache=False)  # one: now it rests
        for n in range(3):
            verdict = await verifier.verify(f"user{n}@fine.test", use_cache=False)
            assert verdict.result is Result.PASS
    assert [peer for peer, _ in sessions(world, "127.0.0.9")] == ["127.0.0.52"] * 4
    rests = [r.getMessage() for r in caplog.records if r.name == "cbv.egress"]
    assert rests == ["egress one refused as blocked or listed by several hosts (last "
                     "mx.two.test); it rests 1800 s"]


async def test_a_dual_stack_egress_dials_ipv6_from_its_ipv6_address(world: World) -> None:
    farm = await start_farm({"::1": MXScript(catch_all=True)})
    world.farms.append(farm)
    world.dns.add_aaaa("mx.v6.test", "::1")
    world.dns.add_mx("v6.test", [(10, "mx.v6.test")])
    egress = {"name": "dual", "source_address": ["127.0.0.51", "::1"],
              "helo_name": "dual.verifier.test"}
    config = world.config(None, callout={"egress": [egress]},
                          security={"allowed_target_networks": ["127.0.0.0/8", "::1/128"]})
    async with Verifier(config) as verifier:
        verdict = await verifier.verify("x@v6.test", use_cache=False)
    assert (verdict.result, verdict.ip) == (Result.PASS, "::1")
    assert sessions(world, "::1") == [("::1", "EHLO dual.verifier.test")]
