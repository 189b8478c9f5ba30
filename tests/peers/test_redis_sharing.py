"""Several verifiers sharing one Redis: one callout per address, one budget per domain."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import MXScript
from tests.world import World

pytestmark = pytest.mark.peers

CBV = [sys.executable, "-m", "cbv.cli"]
ROOT = Path(__file__).resolve().parents[2]
ROOMY_DOMAIN = {"domain_burst": 1_000}


def write_config(path: Path, world: World, redis_url: str) -> Path:
    # recheck_catch_all: every address is asked (once), not answered from the catch-all fact
    callout = "total_timeout = 20.0\nrecheck_catch_all = true"
    path.write_text(world.toml(world.farms[-1].port, callout) + f"""
[cache]
url = "{redis_url}"

[limits]
domain_burst = 100000
ip_burst = 100000
network_burst = 100000
provider_burst = 100000
mx_concurrency = 1000
max_in_flight = 10000
""")
    return path


async def run_cli(*args: str) -> list[dict[str, object]]:
    process = await asyncio.create_subprocess_exec(
        *CBV, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]


async def test_two_processes_verifying_the_same_thousand_addresses_call_out_once_each(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    farm = await world.mx("shared.test", {"127.0.0.2": MXScript(catch_all=True,
                                                                  delays={"rcpt": 0.01})})
    addresses = [f"user{n}@shared.test" for n in range(1_000)]
    listing = tmp_path / "addresses.txt"
    listing.write_text("\n".join(addresses) + "\n")
    config = write_config(tmp_path / "cbv.toml", world, redis_url)
    first, second = await asyncio.gather(
        run_cli("verify", "--json", "--config", str(config), "--file", str(listing)),
        run_cli("verify", "--json", "--config", str(config), "--file", str(listing)),
    )
    for output in (first, second):
        assert [v["address"] for v in output] == addresses
        assert {v["result"] for v in output} == {"pass"}
    seen = Counter(farm.servers["127.0.0.2"].rcpts)
    assert {address: seen[address] for address in addresses} == dict.fromkeys(addresses, 1)
    cached = sum(1 for v in first + second if v["cached"])
    assert cached >= 1  # one process took verdicts the other one stored


async def test_single_flight_spans_verifiers_sharing_redis(world: World, redis_url: str) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True,
                                                                   delays={"rcpt": 0.1})})
    config = world.config(cache={"url": redis_url})
    async with Verifier(config) as one, Verifier(config) as two:
        verdicts = await asyncio.gather(
            *(verifier.verify("alice@example.test") for verifier in (one, two) * 500)
        )
    assert {v.result for v in verdicts} == {Result.PASS}
    assert farm.servers["127.0.0.2"].rcpts.count("alice@example.test") == 1


async def test_the_domain_budget_is_shared_by_every_verifier(world: World, redis_url: str) -> None:
    """500 senders of one domain, every other one through each verifier: the domain sees
    one budget's callouts (10 at once, then one every 2 s), not two."""
    farm = await world.mx("forged.test", {"127.0.0.2": MXScript(catch_all=True)})
    config = world.config(cache={"url": redis_url}, limits={"max_wait": 1.0})
    started = time.monotonic()
    async with Verifier(config) as one, Verifier(config) as two:
        verdicts = await asyncio.gather(*(
            verifier.verify(f"forged{n}@forged.test")
            for n, verifier in enumerate((one, two) * 250)
        ))
    elapsed = time.monotonic() - started
    limits = config.limits
    budget = limits.domain_burst + int(elapsed * limits.domain_per_minute / 60) + 1
    assert farm.servers["127.0.0.2"].connections <= budget
    limited = sum(1 for v in verdicts if v.reason is Reason.RATE_LIMITED)
    assert limited >= len(verdicts) - budget


async def test_the_host_cap_is_shared_by_every_verifier(world: World, redis_url: str) -> None:
    script = MXScript(catch_all=True, delays={"rcpt": 0.3})
    farm = await world.mx("example.test", {"127.0.0.2": script})
    config = world.config(cache={"url": redis_url},
                          limits={"mx_concurrency": 1, "max_wait": 0, **ROOMY_DOMAIN})
    async with Verifier(config) as one, Verifier(config) as two:
        verdicts = await asyncio.gather(one.verify("a@example.test"), two.verify("b@example.test"))
    assert Counter(v.reason for v in verdicts) == {Reason.ACCEPTED: 1, Reason.RATE_LIMITED: 1}
    assert farm.servers["127.0.0.2"].connections == 1



async def test_the_verifier_works_on_a_redis_cluster(world: World, redis_cluster_url: str) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    domains = [f"d{n}.test" for n in range(6)]
    for domain in domains:
        world.dns.add_mx(domain, [(10, "mx1.example.test")])
    addresses = [f"user{n}@{domain}" for domain in domains for n in range(5)]
    config = world.config(cache={"url": redis_cluster_url})
    async with Verifier(config) as one:
        fresh = await one.verify_many(addresses)
    async with Verifier(config) as two:
        again = await asyncio.gather(*(two.verify(a) for a in addresses))
        assert await two.cache.purge_domain("d0.test") == 5
    assert {(v.result, v.cached) for v in fresh} == {(Result.PASS, False)}
    assert {(v.result, v.cached) for v in again} == {(Result.PASS, True)}
    seen = Counter(farm.servers["127.0.0.2"].rcpts)
    assert all(seen[a] == 1 for a in addresses)
