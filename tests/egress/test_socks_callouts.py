"""Callouts through a real SOCKS5 server (Debian's microsocks) on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, Stage, Verdict
from cbv.testing import MXScript, Reply
from cbv.testing.mx_script import Rule
from tests.egress.socks_server import SocksFactory, free_port
from tests.world import World

ALICE = "alice@example.test"
KNOWN: list[Rule] = [(ALICE, Reply(250, "2.1.5 Ok"))]
MX_IP = "127.0.0.2"
PROXY_OUT = "127.0.0.60"  # where microsocks's onward connections come from


async def verify(world: World, callout: dict[str, Any],
                 security: dict[str, Any] | None = None) -> Verdict:
    extra = {"security": security} if security is not None else {}
    async with Verifier(world.config(None, callout=callout, **extra)) as verifier:
        return await verifier.verify(ALICE, transcript=True)


def peers(world: World) -> list[str]:
    return [session.peer[0] for session in world.server(MX_IP).log]


async def test_a_callout_goes_through_the_proxy(world: World, socks_factory: SocksFactory
                                                ) -> None:
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN)})
    proxy = socks_factory()
    verdict = await verify(world, {"proxy": proxy.url})
    assert (verdict.result, verdict.reason) == (Result.PASS, Reason.ACCEPTED)
    assert peers(world) == [PROXY_OUT]  # the MX saw the proxy, never cbv itself
    assert verdict.transcript is not None
    assert "through egress proxy (socks5://127.0.0.1:" in verdict.transcript[0].line


async def test_a_callout_goes_through_a_proxy_with_username_and_password(
    world: World, socks_factory: SocksFactory
) -> None:
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN, starttls=True)})
    proxy = socks_factory(username="cbv", password="s3cret")
    verdict = await verify(world, {"proxy": proxy.url})
    assert (verdict.result, verdict.reason) == (Result.PASS, Reason.ACCEPTED)
    assert peers(world) == [PROXY_OUT]
    assert world.server(MX_IP).log[0].tls  # STARTTLS works through the tunnel


async def test_bad_credentials_are_transient_with_a_clear_detail(
    world: World, socks_factory: SocksFactory
) -> None:
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN)})
    proxy = socks_factory(username="cbv", password="s3cret")
    url = proxy.url.replace("s3cret", "wrong")
    verdict = await verify(world, {"proxy": url})
    assert (verdict.result, verdict.reason, verdict.stage) == (
        Result.TRANSIENT, Reason.CONNECTION_FAILED, Stage.CONNECT)
    assert verdict.detail is not None
    assert "egress proxy: socks5://cbv@127.0.0.1" in verdict.detail
    assert "refused the username and password" in verdict.detail
    assert "wrong" not in verdict.detail
    assert peers(world) == []


async def test_bad_credentials_move_the_callout_to_the_next_egress(
    world: World, socks_factory: SocksFactory
) -> None:
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN)})
    proxy = socks_factory(username="cbv", password="s3cret")
    egresses = [{"name": "locked", "proxy": proxy.url.replace("s3cret", "wrong")},
                {"name": "spare", "source_address": "127.0.0.61"}]
    verdict = await verify(world, {"egress": egresses, "egress_routes": {"*": ["locked"]}})
    assert verdict.result is Result.TRANSIENT  # the route names only the locked proxy
    verdict = await verify(world, {"egress": egresses})
    assert (verdict.result, verdict.reason) == (Result.PASS, Reason.ACCEPTED)
    assert peers(world) == ["127.0.0.61"]


async def test_a_dead_proxy_is_transient_and_the_next_egress_takes_over(
    world: World, socks_factory: SocksFactory
) -> None:
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN)})
    live = socks_factory()
    dead = f"socks5://127.0.0.1:{free_port()}"
    verdict = await verify(world, {"proxy": dead})
    assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.CONNECTION_FAILED)
    assert verdict.detail is not None and f"cannot reach {dead}" in verdict.detail
    egresses = [{"name": "dead", "proxy": dead}, {"name": "live", "proxy": live.url}]
    async with Verifier(world.config(callout={"egress": egresses})) as verifier:
        verdict = await verifier.verify(ALICE, use_cache=False)
        assert (verdict.result, verdict.reason) == (Result.PASS, Reason.ACCEPTED)
        assert verifier.egresses.state("dead").value == "failing"
    assert peers(world) == [PROXY_OUT]


async def test_a_target_the_proxy_cannot_reach_tries_the_next_host(
    world: World, socks_factory: SocksFactory
) -> None:
    farm = await world.mx("example.test", {"127.0.0.3": MXScript(rcpt=KNOWN)})
    world.dns.add_a("mx0.example.test", "127.0.0.4")  # nothing listens there
    world.dns.add_mx("example.test", [(5, "mx0.example.test")])
    proxy = socks_factory()
    verdict = await verify(world, {"proxy": proxy.url, "port": farm.port})
    assert (verdict.result, verdict.mx) == (Result.PASS, "mx1.example.test")
    assert verdict.transcript is not None
    assert any("through socks5://" in line.line and "connection refused" in line.line
               for line in verdict.transcript)


@pytest_asyncio.fixture
async def counting_listener() -> AsyncIterator[tuple[int, list[str]]]:
    """Stands in for a proxy: records every connection and says nothing."""
    seen: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(writer.get_extra_info("peername")[0])
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1], seen
    server.close()
    await server.wait_closed()


async def test_a_forbidden_target_is_refused_before_the_proxy_is_asked(
    world: World, counting_listener: tuple[int, list[str]]
) -> None:
    port, seen = counting_listener
    await world.mx("example.test", {MX_IP: MXScript(rcpt=KNOWN)})
    verdict = await verify(world, {"proxy": f"socks5://127.0.0.1:{port}"},
                           security={"allowed_target_networks": []})
    assert verdict.reason is Reason.TARGET_FORBIDDEN
    assert seen == []
