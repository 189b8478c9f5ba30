"""Two daemons sharing one real redis-server: the budgets per MX address and the refusal
cooldowns are the fleet's, not each daemon's; `cbv cache cooling` and /metrics show the
cooling addresses."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import httpx
import pytest

from cbv.cache.opening import open_cache
from cbv.callout.plan import Target
from cbv.config import CacheConfig, LimitsConfig
from cbv.engine.budgets import allowances
from cbv.engine.limits import CalloutLimits
from cbv.testing import MXScript
from tests.destinations.flood import (
    DEFAULT_BUDGETS,
    REFUSAL,
    VICTIM,
    bound,
    domains_naming,
    flood,
    forged_domains,
    senders,
    sessions,
    victims,
)
from tests.peers.redis_server import RedisProcess
from tests.servers.clients import running, server_config
from tests.world import World

pytestmark = pytest.mark.peers

ROOT = Path(__file__).resolve().parents[2]


async def cbv_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cbv.cli", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_two_daemons_share_one_mx_address_budget(world: World, redis_url: str) -> None:
    """1,000 forged senders over 500 domains on one victim address, half through each
    daemon: the victim sees one budget's sessions, not two. Each daemon alone is offered
    250 domains, many times what one budget allows in the few seconds the flood takes
    (3 at once, then one a second), so two budgets would show as up to twice as many."""
    farm = await victims(world, [VICTIM], MXScript(catch_all=True))
    domains = forged_domains(world, 500, [VICTIM])
    config = server_config(world, farm, cache={"url": redis_url}, limits=DEFAULT_BUDGETS)
    async with running(config) as one, running(config) as two:
        policies = [one.addresses()["policy"], two.addresses()["policy"]]
        result = await flood(policies, senders(domains, 1_000))
    assert sum(result.actions.values()) == 1_000
    limits = config.limits
    opened = sessions(farm)
    print(f"two daemons: 1000 requests in {result.seconds:.1f} s -> {opened} sessions")
    assert 0 < opened <= bound(limits.ip_burst, limits.ip_per_minute, result.seconds)


async def test_two_daemons_share_a_refusing_mx_cooldown(
    world: World, redis_url: str, tmp_path: Path
) -> None:
    farm = await victims(world, [VICTIM], MXScript(banner=REFUSAL))
    domains = domains_naming(world, 40, "mx.victim.test", VICTIM)
    server = {"policy": "127.0.0.1:0", "smtpcbd": "", "http": "127.0.0.1:0"}
    config = server_config(world, farm, cache={"url": redis_url}, limits=DEFAULT_BUDGETS,
                           server=server)
    async with running(config) as one, running(config) as two:
        policies = [one.addresses()["policy"], two.addresses()["policy"]]
        first = await flood(policies, senders(domains, 40))
        again = await flood(policies, senders(domains, 40))
        async with httpx.AsyncClient(base_url=f"http://{two.addresses()['http']}") as client:
            metrics = (await client.get("/metrics")).text
            status = (await client.get("/v1/status")).json()
    assert set(first.actions) <= {"DUNNO", "DEFER_IF_PERMIT"}
    assert again.actions == {"DUNNO": 40}
    assert 1 <= sessions(farm) <= 3
    assert "cbv_cooling_hosts 1.0" in metrics
    assert [host["ip"] for host in status["cooling"]] == [VICTIM]
    assert "554 5.7.1 Service unavailable" in status["cooling"][0]["said"]

    toml = tmp_path / "cbv.toml"
    toml.write_text(world.toml(farm.port) + f'[cache]\nurl = "{redis_url}"\n')
    code, out, err = await cbv_cli("cache", "cooling", "--json", "--config", str(toml))
    assert code == 0, err
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert (listed["ip"], listed["refusals"]) == (VICTIM, 1)
    assert listed["until"].endswith("Z")
    code, out, err = await cbv_cli("cache", "cooling", "--forget", VICTIM, "--config", str(toml))
    assert (code, out.strip()) == (0, "forgot the refusals of 1 MX address"), err
    code, out, _ = await cbv_cli("cache", "cooling", "--config", str(toml))
    assert (code, out.strip()) == (0, "no MX address is cooling")


async def test_the_gate_looks_at_cooldown_and_budgets_in_one_script(
    redis_standalone: RedisProcess, redis_url: str
) -> None:
    """One round trip per session on a standalone Redis; a cooling address spends nothing."""
    config = LimitsConfig(ip_per_minute=1, ip_burst=1)
    opened = open_cache(CacheConfig(url=redis_url))
    assert opened.redis is not None
    limits = CalloutLimits.build(config, opened.redis, lease=10.0)
    cooling, fresh = (allowances(Target("mx.victim.test", ip, 25), config)
                      for ip in ("192.0.2.1", "192.0.2.2"))

    def scripts_run() -> int:
        stats = redis_standalone.client().info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    try:
        await limits.cooldown.refused("192.0.2.1", "554 5.7.1 blocked")
        standing, reserved = await limits.first_look.look("192.0.2.1", cooling)
        assert standing.cooling and reserved is None
        assert await limits.destinations.free_in(cooling) == 0.0
        before = scripts_run()
        assert (await limits.first_look.look("192.0.2.2", fresh))[1] == 0.0
        assert scripts_run() == before + 1
        assert (await limits.first_look.look("192.0.2.2", fresh))[1] == fresh[0]
    finally:
        await opened.backend.aclose()
