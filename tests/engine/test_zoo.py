"""Every zoo scenario gives the verdict the zoo promises (the demo and comparison rely on it)."""

from __future__ import annotations

import asyncio

from cbv.engine.verifier import Verifier
from cbv.testing import FakeDNS
from cbv.testing.zoo import SCENARIOS, start_zoo
from tests.world import make_config


async def test_every_scenario_gives_its_expected_reason(fake_dns: FakeDNS) -> None:
    async with await start_zoo(fake_dns) as zoo:
        config = make_config(fake_dns.nameserver, zoo.port,
                             callout={"command_timeout": 0.5, "total_timeout": 3.0})
        async with Verifier(config) as verifier:
            verdicts = await asyncio.gather(*(verifier.verify(s.address()) for s in SCENARIOS))
    assert {s.name: v.reason for s, v in zip(SCENARIOS, verdicts, strict=True)} == {
        s.name: s.expected for s in SCENARIOS
    }
