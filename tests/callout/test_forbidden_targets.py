"""A forbidden target is never dialled, whichever path names it.

Every TCP connect the process attempts is recorded at the socket, below asyncio and any
connector, so a path that forgets the target filter shows up as a recorded connect.
`test_forbidden_targets_in_a_namespace` runs this module again inside a network namespace
with only loopback (`unshare -n`), where a dial that slips through fails instead of
leaving the machine.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from cbv.callout.connector import DIRECT, DirectConnector, FilteredConnector, ForbiddenTarget
from cbv.callout.networks import TargetPolicy
from cbv.callout.plan import Target
from cbv.model import Reason, Result, Verdict
from tests.missing import missing
from tests.servers.clients import running, sender_domains, server_config
from tests.world import World

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN_V6 = [
    "2002:a00:1::",
    "2002:7f00:2::1",
    "64:ff9b::a00:1",
    "64:ff9b::7f00:2",
    "64:ff9b:1::a00:1",
    "::10.0.0.1",
    "::ffff:0:a00:1",
    "2001:0:a00:1::",
    "fec0::1",
    "3fff::1",
    "5f00::1",
    "fd00::25",
    "fe80::1",
]
FORBIDDEN_V4 = ["192.88.99.1", "10.0.0.1", "100.64.0.25", "169.254.169.254", "198.18.0.1"]


class Dials:
    """Every stream connect attempted; refused before it reaches the kernel unless its
    address was let through (the test's own client to the daemon it started)."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []
        self.through: set[Any] = set()

    def refuses(self, sock: socket.socket, address: Any) -> bool:
        if sock.type != socket.SOCK_STREAM:
            return False
        self.attempts.append(address)
        return tuple(address[:2]) not in self.through

    def let_through(self, host: str, port: int) -> None:
        self.through.add((host, port))


@pytest.fixture
def dials(monkeypatch: pytest.MonkeyPatch) -> Dials:
    recorder = Dials()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(sock: socket.socket, address: Any) -> None:
        if recorder.refuses(sock, address):
            raise ConnectionRefusedError(f"test forbids dialling {address}")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if recorder.refuses(sock, address):
            return errno.ECONNREFUSED
        return real_connect_ex(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    return recorder


def assert_refused_unknown(verdict: Verdict) -> None:
    assert (verdict.result, verdict.reason) == (Result.UNKNOWN, Reason.TARGET_FORBIDDEN)
    assert verdict.detail and "forbidden network" in verdict.detail


@pytest.mark.parametrize("ip", FORBIDDEN_V6)
async def test_mx_aaaa(world: World, dials: Dials, ip: str) -> None:
    world.dns.add_mx("victim.test", [(10, "mx.victim.test")])
    world.dns.add_aaaa("mx.victim.test", ip)
    assert_refused_unknown(await world.verify("a@victim.test", port=25))
    assert dials.attempts == []


@pytest.mark.parametrize("ip", FORBIDDEN_V4)
async def test_mx_a(world: World, dials: Dials, ip: str) -> None:
    world.dns.add_mx("victim.test", [(10, "mx.victim.test")])
    world.dns.add_a("mx.victim.test", ip)
    assert_refused_unknown(await world.verify("a@victim.test", port=25))
    assert dials.attempts == []


@pytest.mark.parametrize("ip", FORBIDDEN_V6)
async def test_implicit_aaaa(world: World, dials: Dials, ip: str) -> None:
    world.dns.add_aaaa("implicit.test", ip)
    assert_refused_unknown(await world.verify("a@implicit.test", port=25))
    assert dials.attempts == []


@pytest.mark.parametrize("ip", [*FORBIDDEN_V6, *FORBIDDEN_V4])
async def test_address_literal(world: World, dials: Dials, ip: str) -> None:
    literal = f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"
    assert_refused_unknown(await world.verify(f"postmaster@{literal}", port=25))
    assert dials.attempts == []


@pytest.mark.parametrize("ip", [*FORBIDDEN_V6, *FORBIDDEN_V4])
async def test_route_to_an_address(world: World, dials: Dials, ip: str) -> None:
    host = f"[{ip}]:2525" if ":" in ip else f"{ip}:2525"
    verdict = await world.verify("a@routed.test", callout={"routes": {"routed.test": [host]}})
    assert_refused_unknown(verdict)
    assert dials.attempts == []


@pytest.mark.parametrize("ip", FORBIDDEN_V6)
async def test_route_to_a_name(world: World, dials: Dials, ip: str) -> None:
    world.dns.add_aaaa("store.routed.test", ip)
    verdict = await world.verify("a@routed.test",
                                 callout={"routes": {"routed.test": ["store.routed.test"]}})
    assert_refused_unknown(verdict)
    assert dials.attempts == []


@pytest.mark.parametrize("ip", FORBIDDEN_V6)
async def test_map(world: World, dials: Dials, ip: str) -> None:
    world.dns.add_mx("victim.test", [(10, "mx.victim.test")])
    world.dns.add_aaaa("mx.victim.test", ip)
    verdict = await world.verify("a@forged.test", port=25,
                                 callout={"map": {"forged.test": "victim.test"}})
    assert_refused_unknown(verdict)
    assert dials.attempts == []


@pytest.mark.parametrize("ip", [*FORBIDDEN_V6, *FORBIDDEN_V4])
async def test_every_connector_refuses_a_forbidden_target_itself(dials: Dials, ip: str) -> None:
    """Defence in depth: even a path that skipped the plan cannot dial."""
    connector = FilteredConnector(DirectConnector(), TargetPolicy(["127.0.0.0/8"]))
    with pytest.raises(ForbiddenTarget, match="forbidden network"):
        await connector.connect(Target("mx.victim.test", ip, 25), DIRECT, asyncio.Protocol())
    assert dials.attempts == []


async def test_the_recorder_sees_a_dial(world: World, dials: Dials) -> None:
    """The recorder itself works: an allowed target is attempted, and recorded."""
    world.dns.add_mx("allowed.test", [(10, "mx.allowed.test")])
    world.dns.add_a("mx.allowed.test", "127.0.0.9")
    verdict = await world.verify("a@allowed.test", port=25)
    assert verdict.result is Result.TRANSIENT
    assert [address[0] for address in dials.attempts] == ["127.0.0.9"]


async def test_http_api(world: World, dials: Dials) -> None:
    farm = await sender_domains(world)
    config = server_config(world, farm, server={"policy": "", "smtpcbd": "",
                                                "http": "127.0.0.1:0"})
    async with running(config) as daemon:
        address = daemon.addresses()["http"]
        host, port = address.rsplit(":", 1)
        dials.let_through(host, int(port))
        async with httpx.AsyncClient(base_url=f"http://{address}") as client:
            for ip in ("2002:a00:1::", "64:ff9b::a00:1", "fec0::1"):
                answer = await client.get("/v1/verify",
                                          params={"address": f"postmaster@[IPv6:{ip}]"})
                assert answer.status_code == 200, answer.text
                assert answer.json()["reason"] == "target_forbidden"
    assert {tuple(dial[:2]) for dial in dials.attempts} == {(host, int(port))}


async def test_cli(world: World, tmp_path: Path) -> None:
    config = tmp_path / "cbv.toml"
    config.write_text(world.toml(25) + '[cache]\nurl = "memory://"\n')
    literals = ["postmaster@[IPv6:2002:a00:1::]", "postmaster@[192.88.99.1]",
                "postmaster@[IPv6:::ffff:0:a00:1]"]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cbv.cli", "verify", "--config", str(config), "--json", *literals,
        env={**os.environ, "CBV_CONFIG": ""},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    verdicts = [json.loads(line) for line in out.decode().splitlines()]
    assert [v["reason"] for v in verdicts] == ["target_forbidden"] * len(literals)


def test_forbidden_targets_in_a_namespace() -> None:
    """Run this module where only loopback exists: a dial that escapes the filter fails."""
    if os.geteuid() != 0:
        missing("the network-namespace run needs root (unshare -n)")
    module = Path(__file__).relative_to(ROOT)
    command = (
        "ip link set lo up && "
        f"exec {sys.executable} -m pytest -q -p no:cacheprovider {module} "
        f"tests/callout/test_networks.py --deselect {module}::test_forbidden_targets_in_a_namespace"
    )
    finished = subprocess.run(
        ["unshare", "-n", "sh", "-c", command],
        cwd=ROOT,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-2000:]
    assert " passed" in finished.stdout and "failed" not in finished.stdout
