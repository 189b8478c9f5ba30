"""The DNS server goes away under a running daemon: new domains get a transient answer
within the DNS budget, and what is cached still answers."""

from __future__ import annotations

import time

from cbv.testing import FakeDNS
from tests.servers.clients import PolicyClient, running, sender_domains, server_config, smtpcbd
from tests.world import World

DNS_TIMEOUT = 1.0
BUDGET = 3 * DNS_TIMEOUT + 1.0  # MX, then A/AAAA, with room to spare; never answer_within


async def test_dns_gone_gives_transient_answers_within_the_budget(world: World,
                                                                   fake_dns: FakeDNS) -> None:
    farm = await sender_domains(world)
    config = server_config(world, farm, dns={"timeout": DNS_TIMEOUT})
    async with running(config) as daemon:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        assert await client.ask("alice@pass.test") == "DUNNO"
        fake_dns.stop()
        for n in range(3):
            started = time.monotonic()
            answer = await client.ask(f"someone{n}@new{n}.test")
            assert answer.startswith("DEFER_IF_PERMIT 4.1.7 unverified address (dns_tempfail"), \
                answer
            line = await smtpcbd(daemon.addresses()["smtpcbd"], f"<x@other{n}.test>\n".encode())
            assert line.startswith("TEMPFAIL:dns_tempfail"), line
            assert time.monotonic() - started < 2 * BUDGET
        assert await client.ask("alice@pass.test") == "DUNNO"  # cached
        await client.close()
