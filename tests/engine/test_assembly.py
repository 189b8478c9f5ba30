"""The composition root: every I/O part of the engine can be passed in instead of built."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cbv.address import Address, parse_address
from cbv.cache.memory import MemoryBackend
from cbv.callout.connector import DirectConnector
from cbv.callout.plan import Target
from cbv.egress.table import Egress
from cbv.engine.assembly import assemble
from cbv.engine.limits import CalloutLimits
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, Stage
from cbv.testing import MXScript, Reply
from tests.cache.helpers import FakeClock
from tests.world import World

ALICE = "alice@example.test"
OK = Reply(250, "2.1.5 Ok")


class RecordingConnector:
    """Dials for real, and notes where each connection went and through which egress."""

    def __init__(self) -> None:
        self.dialled: list[tuple[Target, Egress]] = []

    async def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol) -> None:
        self.dialled.append((target, egress))
        await DirectConnector().connect(target, egress, protocol)


class RefusingConnector:
    async def connect(self, target: Target, egress: Egress, protocol: asyncio.Protocol) -> None:
        raise ConnectionRefusedError(111, "refused by the test connector")


class RecordingLocks:
    """Every claim succeeds here, as without Redis; the addresses claimed are noted."""

    spans_processes = False

    def __init__(self) -> None:
        self.claimed: list[Address] = []
        self.released: list[Address] = []

    async def claim(self, addresses: Sequence[Address]) -> tuple[list[Address], list[Address]]:
        self.claimed.extend(addresses)
        return list(addresses), []

    async def release(self, addresses: Sequence[Address]) -> None:
        self.released.extend(addresses)

    async def wait(self, address: Address) -> None:
        """Nothing is held elsewhere."""


async def test_callouts_connect_through_the_injected_connector(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    connector = RecordingConnector()
    config = world.config(callout={"source_address": "127.0.0.1"})
    async with Verifier(assemble(config, connector=connector)) as verifier:
        verdict = await verifier.verify(ALICE)
    assert verdict.result is Result.PASS
    [(target, egress)] = connector.dialled
    assert (target.host, target.ip, target.port) == ("mx1.example.test", "127.0.0.2",
                                                     config.callout.port)
    assert (egress.name, egress.sources, egress.proxy) == ("direct", ("127.0.0.1",), None)


async def test_a_connector_that_fails_is_a_connection_failure(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    async with Verifier(world.config(), connector=RefusingConnector()) as verifier:
        verdict = await verifier.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (
        Result.TRANSIENT, Reason.CONNECTION_FAILED, Stage.CONNECT)
    assert verdict.detail is not None and "refused by the test connector" in verdict.detail
    assert farm.servers["127.0.0.2"].connections == 0


async def test_injected_cache_limits_and_locks_are_the_ones_used(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    config = world.config()
    cache = MemoryBackend(100)
    locks = RecordingLocks()
    limits = CalloutLimits.build(config.limits, None, lease=10.0)
    engine = assemble(config, cache=cache, limits=limits, locks=locks)
    assert (engine.cache, engine.limits, engine.locks) == (cache, limits, locks)
    async with Verifier(engine) as verifier:
        await verifier.verify(ALICE)
    stored = await cache.get(parse_address(ALICE))
    assert stored is not None and stored.verdict.result is Result.PASS
    assert [str(a) for a in locks.claimed] == [ALICE]
    assert [str(a) for a in locks.released] == [ALICE]


async def test_parts_go_to_assemble_not_beside_an_engine(world: World) -> None:
    engine = assemble(world.config())
    with pytest.raises(TypeError, match="assemble"):
        Verifier(engine, cache=MemoryBackend(10))
    await engine.aclose()



async def test_dns_answers_last_their_ttl_on_the_injected_clock(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=[("alice@*", OK)])})
    clock = FakeClock()
    async with Verifier(world.config(), clock=clock, cache=MemoryBackend(100, clock)) as verifier:
        await verifier.verify(ALICE, use_cache=False)
        clock.advance(299)
        await verifier.verify(ALICE, use_cache=False)
        assert world.dns.query_count("example.test", "MX") == 1
        clock.advance(1)
        await verifier.verify(ALICE, use_cache=False)
    assert world.dns.query_count("example.test", "MX") == 2
