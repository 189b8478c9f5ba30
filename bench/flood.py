"""`python -m bench flood [--minutes N]`: forged senders at one domain, 10,000 a minute,
on default limits; prints requests per minute received against callouts per minute that
reach the domain's MX (docs/security.md quotes it)."""

from __future__ import annotations

import argparse
import asyncio
import time

from cbv.config import config_from_dict
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.testing import FakeDNS, MXScript, start_farm

PER_MINUTE = 10_000
BATCHES_PER_MINUTE = 10
MX_IP = "127.0.0.2"


async def flood(minutes: int) -> tuple[int, int, int, float]:
    """(requests, MX connections, RCPTs, seconds) for `minutes` of forged senders."""
    with FakeDNS() as dns:
        farm = await start_farm({MX_IP: MXScript(catch_all=True)})
        try:
            dns.add_mx("forged.test", [(10, "mx.forged.test")])
            dns.add_a("mx.forged.test", MX_IP)
            config = config_from_dict({
                "dns": {"nameservers": [dns.nameserver]},
                "callout": {"port": farm.port, "helo_name": "verifier.flood.test"},
                "security": {"allowed_target_networks": ["127.0.0.0/8"]},
                "cache": {"url": "memory://"},
            }, "flood")  # [limits] left at their defaults: that is what is measured
            batch = PER_MINUTE // BATCHES_PER_MINUTE
            every = 60.0 / BATCHES_PER_MINUTE
            requests = 0
            started = time.monotonic()
            async with Verifier(assemble(config)) as verifier:
                for n in range(minutes * BATCHES_PER_MINUTE):
                    await asyncio.gather(*(verifier.verify(f"forged{n}-{i}@forged.test")
                                           for i in range(batch)))
                    requests += batch
                    await asyncio.sleep(max(0.0, started + every * (n + 1) - time.monotonic()))
            seconds = time.monotonic() - started
            mx = farm.servers[MX_IP]
            return requests, mx.connections, len(mx.rcpts), seconds
        finally:
            await farm.stop()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench flood", description=__doc__)
    parser.add_argument("--minutes", type=int, default=1)
    args = parser.parse_args(argv)
    requests, connections, rcpts, seconds = asyncio.run(flood(args.minutes))
    per_minute = 60.0 / seconds
    print(f"requests received: {requests} ({requests * per_minute:.0f}/min)")
    print(f"callouts reaching the MX: {connections} sessions ({connections * per_minute:.1f}/min),"
          f" {rcpts} RCPTs")
    return 0
