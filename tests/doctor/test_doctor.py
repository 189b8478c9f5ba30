"""`cbv doctor` against the fake DNS and hosts on loopback: every check passing and failing."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from cbv.config import Config
from cbv.dns.resolver import DnspythonResolver
from cbv.doctor.checks import Finding
from cbv.doctor.lookups import DnspythonDoctorDns, dnsbl_name
from cbv.doctor.run import examine
from cbv.testing import MXScript, Reply, start_farm
from tests.egress.socks_server import free_port
from tests.world import HELO, World

EGRESS_IP = "127.0.0.51"
EGRESS_HELO = "out.verifier.test"
TEST_HOST_IP = "127.0.0.2"
SENDER_MX_IP = "127.0.0.3"
ZONES = ["dnsbl.test", "backscatter.test"]
POSTMASTER = f"postmaster@{HELO}"
CHECKS = [
    "out: HELO name resolves", "out: PTR = HELO name", "out: not on dnsbl.test",
    "out: not on backscatter.test", "out: greeting from {host}", "sender: {sender} accepted",
    "cache: usable",
]


async def site(world: World, test_host: MXScript | None = None,
               sender_mx: MXScript | None = None) -> None:
    """A test host, the sender's domain accepting postmaster, an egress whose names match."""
    accepts = MXScript(rcpt=[(POSTMASTER, Reply(250, "2.1.5 Ok"))])
    farm = await start_farm({TEST_HOST_IP: test_host or MXScript(),
                             SENDER_MX_IP: sender_mx or accepts})
    world.farms.append(farm)
    world.dns.add_a(f"mx.{HELO}", SENDER_MX_IP)
    world.dns.add_mx(HELO, [(10, f"mx.{HELO}")])
    world.dns.add_a(EGRESS_HELO, EGRESS_IP)
    world.dns.add_record("51.0.0.127.in-addr.arpa", "PTR", f"{EGRESS_HELO}.")


def host_of(world: World) -> str:
    return f"{TEST_HOST_IP}:{world.farms[-1].port}"


def config(world: World, *, egress: dict[str, Any] | None = None, host: str | None = None,
           **sections: dict[str, Any]) -> Config:
    table = {"name": "out", "source_address": EGRESS_IP, "helo_name": EGRESS_HELO}
    doctor = {"dnsbl_zones": ZONES, "test_host": host or host_of(world), "timeout": 3.0}
    return world.config(None, callout={"egress": [egress or table]}, doctor=doctor, **sections)


async def findings(cfg: Config) -> dict[str, Finding]:
    found = await examine(cfg, DnspythonDoctorDns(cfg.dns), DnspythonResolver(cfg.dns))
    return {f"{finding.subject}: {finding.check}": finding for finding in found}


def failures(found: dict[str, Finding]) -> dict[str, Finding]:
    return {key: finding for key, finding in found.items() if not finding.ok}


def test_blocklist_names_are_reversed_addresses() -> None:
    assert dnsbl_name("192.0.2.1", "zen.spamhaus.org") == "1.2.0.192.zen.spamhaus.org"
    v6 = dnsbl_name("2001:db8::1", "x.test")
    assert v6.startswith("1.0.0.0.0.0.0.0.") and v6.endswith(".8.b.d.0.1.0.0.2.x.test")


async def test_all_good(world: World) -> None:
    await site(world)
    found = await findings(config(world))
    expected = [key.format(host=host_of(world), sender=POSTMASTER) for key in CHECKS]
    assert list(found) == expected
    assert failures(found) == {}
    assert found["out: PTR = HELO name"].detail == (
        f"{EGRESS_IP} -> {EGRESS_HELO} -> {EGRESS_IP}")
    assert found[f"out: greeting from {host_of(world)}"].detail.startswith("220 ")


async def test_a_helo_name_that_does_not_resolve(world: World) -> None:
    await site(world)
    world.dns.remove(EGRESS_HELO)
    bad = failures(await findings(config(world)))
    assert set(bad) == {"out: HELO name resolves", "out: PTR = HELO name"}
    assert bad["out: HELO name resolves"].fix == (
        f"publish an A/AAAA record for {EGRESS_HELO} -> {EGRESS_IP}")
    assert "not forward-confirmed" in bad["out: PTR = HELO name"].detail


async def test_a_ptr_that_names_another_host(world: World) -> None:
    await site(world)
    world.dns.remove("51.0.0.127.in-addr.arpa")
    world.dns.add_record("51.0.0.127.in-addr.arpa", "PTR", "host51.isp.test.")
    bad = failures(await findings(config(world)))
    assert list(bad) == ["out: PTR = HELO name"]
    assert bad["out: PTR = HELO name"].detail == (
        f"the PTR of {EGRESS_IP} is host51.isp.test, not {EGRESS_HELO}")
    assert 'helo_name = "host51.isp.test"' in bad["out: PTR = HELO name"].fix


async def test_no_ptr_at_all(world: World) -> None:
    await site(world)
    world.dns.remove("51.0.0.127.in-addr.arpa")
    bad = failures(await findings(config(world)))
    assert list(bad) == ["out: PTR = HELO name"]
    assert bad["out: PTR = HELO name"].detail.startswith(f"{EGRESS_IP} has no PTR record")


async def test_a_listed_address_and_a_refused_query(world: World) -> None:
    await site(world)
    world.dns.add_a("51.0.0.127.dnsbl.test", "127.0.0.2")
    world.dns.add_a("51.0.0.127.backscatter.test", "127.255.255.254")
    bad = failures(await findings(config(world)))
    assert set(bad) == {"out: not on dnsbl.test", "out: not on backscatter.test"}
    assert bad["out: not on dnsbl.test"].detail == f"{EGRESS_IP} is listed (127.0.0.2)"
    assert "delist" in bad["out: not on dnsbl.test"].fix
    assert "refused the query" in bad["out: not on backscatter.test"].detail


async def test_a_blocklist_that_cannot_be_asked(world: World) -> None:
    await site(world)
    world.dns.set_servfail("51.0.0.127.dnsbl.test")
    bad = failures(await findings(config(world)))
    assert list(bad) == ["out: not on dnsbl.test"]
    assert bad["out: not on dnsbl.test"].detail.startswith("cannot ask dnsbl.test")


async def test_a_dead_test_host(world: World) -> None:
    await site(world)
    dead = f"127.0.0.2:{free_port('127.0.0.2')}"
    bad = failures(await findings(config(world, host=dead)))
    assert list(bad) == [f"out: greeting from {dead}"]
    assert bad[f"out: greeting from {dead}"].detail.startswith("no greeting within 3 s")
    assert "port" in bad[f"out: greeting from {dead}"].fix


async def test_a_test_host_that_refuses_the_egress(world: World) -> None:
    await site(world, test_host=MXScript(banner=Reply(554, "5.7.1 you are listed")))
    bad = failures(await findings(config(world)))
    assert bad[f"out: greeting from {host_of(world)}"].detail == (
        "greeted with 554 5.7.1 you are listed")


async def test_a_proxy_egress_without_a_public_address_and_a_dead_proxy(world: World) -> None:
    await site(world)
    proxy = {"name": "out", "proxy": f"socks5://127.0.0.1:{free_port()}",
             "helo_name": EGRESS_HELO}
    bad = failures(await findings(config(world, egress=proxy)))
    assert set(bad) == {"out: PTR = HELO name", "out: not on blocklists",
                        f"out: greeting from {host_of(world)}",
                        f"sender: {POSTMASTER} accepted"}  # its callout needs the proxy too
    assert "set public_address" in bad["out: PTR = HELO name"].fix
    assert "cannot reach socks5://127.0.0.1:" in bad[f"out: greeting from {host_of(world)}"
                                                     ].detail


async def test_a_sender_domain_without_mx(world: World) -> None:
    await site(world)
    world.dns.remove(HELO)
    bad = failures(await findings(config(world)))
    assert list(bad) == [f"sender: {POSTMASTER} accepted"]
    assert bad[f"sender: {POSTMASTER} accepted"].detail.startswith(f"{HELO} has no usable MX")


async def test_a_sender_domain_that_refuses_its_postmaster(world: World) -> None:
    await site(world, sender_mx=MXScript())
    bad = failures(await findings(config(world)))
    assert list(bad) == [f"sender: {POSTMASTER} accepted"]
    assert bad[f"sender: {POSTMASTER} accepted"].detail.startswith("fail/mailbox_unknown")


async def test_an_unreachable_redis(world: World) -> None:
    await site(world)
    cfg = config(world, cache={"url": f"redis://127.0.0.1:{free_port()}/0",
                               "redis_timeout": 0.5})
    bad = failures(await findings(cfg))
    assert list(bad) == ["redis: reachable"]
    assert "cannot use redis" in bad["redis: reachable"].detail


async def run_doctor(world: World, tmp_path: Path, *args: str, extra: str = ""
                     ) -> tuple[int, str, str]:
    path = tmp_path / "cbv.toml"
    path.write_text(world.toml(world.farms[-1].port) + f"""
[[callout.egress]]
name = "out"
source_address = "{EGRESS_IP}"
helo_name = "{EGRESS_HELO}"
[doctor]
dnsbl_zones = {json.dumps(ZONES)}
test_host = "{host_of(world)}"
timeout = 3.0
[cache]
url = "memory://"
{extra}""")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cbv.cli", "doctor", "--config", str(path), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_command_exits_0_with_a_table_when_all_is_well(world: World, tmp_path: Path
                                                                 ) -> None:
    await site(world)
    status, out, err = await run_doctor(world, tmp_path)
    assert (status, err) == (0, "")
    assert "PTR = HELO name" in out and "all 7 checks passed" in out


async def test_the_command_exits_1_and_says_how_to_fix_in_json(world: World, tmp_path: Path
                                                               ) -> None:
    await site(world)
    world.dns.add_a("51.0.0.127.dnsbl.test", "127.0.0.2")
    status, out, _ = await run_doctor(world, tmp_path, "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert status == 1
    assert [line["check"] for line in lines if not line["ok"]] == ["not on dnsbl.test"]
    assert all(line["fix"] for line in lines if not line["ok"])


async def test_a_bad_config_is_one_line_and_exit_2(world: World, tmp_path: Path) -> None:
    await site(world)
    status, out, err = await run_doctor(world, tmp_path, extra="[doctor.bogus]\n")
    assert (status, out) == (2, "")
    assert err.startswith("cbv: error: ") and err.count("\n") == 1
