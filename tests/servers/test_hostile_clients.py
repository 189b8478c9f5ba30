"""Hostile clients against the listeners of one in-process daemon (policy and smtpcbd
throughout; milter and HTTP for garbage and slow clients).

Garbage, oversized input, slowloris, a thousand connections at once, disconnects in the
middle of a request and a pipelined flood: the daemon must stay up, memory must stay
bounded, and a well-behaved client must keep getting right answers in the meantime.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from cbv.servers.daemon import Daemon
from cbv.testing import MXFarm
from tests.missing import missing
from tests.servers.clients import (
    DOMAINS,
    PolicyClient,
    policy_request,
    running,
    sender_domains,
    server_config,
    smtpcbd,
    split_address,
)
from tests.world import World

LIVENESS = 2.0  # seconds a well-behaved client may wait while the others misbehave
IDLE = 1.0  # the idle timeout these tests run the daemon with
MAX_RSS_GROWTH = 100 * 2**20
MILTER_OPTNEG = bytes.fromhex("0000000d 4f 00000006 000001ff 001fffff")
HTTP_REQUEST = b"GET /healthz HTTP/1.1\r\nHost: cbv.test\r\n\r\n"
SLOW_CLIENT_LISTENERS = ["policy", "smtpcbd", "milter", "http"]


def rss_bytes() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest_asyncio.fixture
async def daemon(world: World) -> AsyncIterator[Daemon]:
    farm: MXFarm = await sender_domains(world)
    # Room for the thousand connections at once and the well-behaved client beside them
    # (the cap itself is tested in test_fair_listeners.py).
    config = server_config(world, farm, server={
        "idle_timeout": IDLE, "milter": "127.0.0.1:0", "http": "127.0.0.1:0",
        "max_connections": 2000})
    async with running(config) as started:
        yield started


async def well_behaved(daemon: Daemon, until: asyncio.Event) -> list[float]:
    """Asks a cached sender over and over on both listeners; returns each answer's delay."""
    client = await PolicyClient.connect(daemon.addresses()["policy"])
    delays = []
    try:
        while not until.is_set():
            started = time.monotonic()
            async with asyncio.timeout(LIVENESS):
                assert await client.ask("alice@pass.test") == "DUNNO"
                line = await smtpcbd(daemon.addresses()["smtpcbd"], b"<nobody@fail.test>\n")
            assert line.startswith("FAIL:mailbox_unknown"), line
            delays.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    return delays


async def while_answering(daemon: Daemon, attack: Callable[[], Awaitable[None]]) -> None:
    """Runs `attack` while a well-behaved client checks it is still served in time."""
    warm = await PolicyClient.connect(daemon.addresses()["policy"])
    assert await warm.ask("alice@pass.test") == "DUNNO"
    await warm.close()
    done = asyncio.Event()
    checker = asyncio.create_task(well_behaved(daemon, done))
    before = rss_bytes()
    try:
        await attack()
    finally:
        done.set()
    delays = await checker
    assert delays, "the well-behaved client got no answer at all"
    assert max(delays) < LIVENESS
    assert rss_bytes() - before < MAX_RSS_GROWTH


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*split_address(address))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """All the server sends until it closes; fails if it is still open after `seconds`.
    A reset counts as a close: a server closing while a byte of ours is still unread in
    its socket makes the kernel send RST, not FIN."""
    async with asyncio.timeout(seconds):
        try:
            return await reader.read()
        except ConnectionResetError:
            return b""


@pytest.mark.parametrize("listener", ["policy", "smtpcbd", "milter", "http"])
async def test_garbage_gets_an_error_or_a_close(daemon: Daemon, listener: str) -> None:
    garbage = bytes(range(256)) * 16 + b"\n\n\x00\xff\r\n\n"

    async def attack() -> None:
        for _ in range(20):
            reader, writer = await connect(daemon.addresses()[listener])
            writer.write(garbage)
            writer.write_eof()
            said = await closed_within(reader, 5)
            writer.close()
            if listener == "smtpcbd":
                assert said.startswith(b"TEMPFAIL:bad request"), said
            elif listener == "http":
                assert said.startswith(b"HTTP/1.1 400 "), said
            elif listener == "milter":
                assert said == b"", said  # a protocol error: closed without an answer
            else:
                assert said.startswith(b"action=") or said == b"", said

    await while_answering(daemon, attack)


async def test_oversized_policy_request_is_refused(daemon: Daemon) -> None:
    client = await PolicyClient.connect(daemon.addresses()["policy"])
    await client.send(b"sender=" + b"a" * 100_000 + b"\n\n")
    assert await client.answer() == "DUNNO"  # fail_open: malformed, answered, not verified
    assert await client.ask("nobody@fail.test") != "DUNNO"  # the connection goes on
    await client.close()


async def test_oversized_smtpcbd_line_is_refused(daemon: Daemon) -> None:
    answer = await smtpcbd(daemon.addresses()["smtpcbd"], b"<" + b"a" * 100_000 + b"@x.test>\n")
    assert answer.startswith("TEMPFAIL:bad request; line longer than 1024 bytes"), answer


@pytest.mark.parametrize("listener", SLOW_CLIENT_LISTENERS)
async def test_silent_client_is_closed_after_the_idle_timeout(daemon: Daemon, listener: str
                                                               ) -> None:
    reader, writer = await connect(daemon.addresses()[listener])
    started = time.monotonic()
    assert await closed_within(reader, IDLE * 4) == b""
    assert time.monotonic() - started >= IDLE * 0.9
    writer.close()


@pytest.mark.parametrize("listener", SLOW_CLIENT_LISTENERS)
async def test_slowloris_is_closed_after_the_idle_timeout(daemon: Daemon, listener: str) -> None:
    """A byte every 0.2 s never completes a request: trickling does not count as activity."""
    reader, writer = await connect(daemon.addresses()[listener])
    request = {"policy": policy_request("alice@pass.test"), "smtpcbd": b"<alice@pass.test>",
               "milter": MILTER_OPTNEG, "http": HTTP_REQUEST}[listener]
    started = time.monotonic()
    closed = asyncio.create_task(closed_within(reader, IDLE * 4))
    try:
        for byte in request[:-1]:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await asyncio.sleep(0.2)
    except ConnectionError:
        pass
    try:
        said = await closed
    except ConnectionResetError:  # closed with our trickled bytes unread: a reset, not a FIN
        said = b""
    assert said == b""
    assert time.monotonic() - started < IDLE * 3
    writer.close()


async def test_a_thousand_connections_at_once(daemon: Daemon) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4096, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2500:
        missing("cannot raise the open-file limit far enough")

    async def one() -> str:
        client = await PolicyClient.connect(daemon.addresses()["policy"])
        try:
            await client.send(policy_request("alice@pass.test"))
            return await client.answer()
        finally:
            await client.close()

    async def attack() -> None:
        answers = await asyncio.gather(*(one() for _ in range(1000)))
        assert answers == ["DUNNO"] * 1000

    try:
        await while_answering(daemon, attack)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_disconnects_in_the_middle_of_a_request(daemon: Daemon, world: World) -> None:
    halves: set[str] = set()  # slow senders of which only half a request was sent

    async def hang_up_after(listener: str, data: bytes) -> None:
        _, writer = await connect(daemon.addresses()[listener])
        writer.write(data)
        await writer.drain()
        writer.transport.abort()

    async def attack() -> None:
        for n in range(50):
            sender = f"user{n}@slow.test" if n % 2 else "alice@pass.test"
            request = policy_request(sender)
            if n % 3:
                request = request[: len(request) // 2]
                halves.add(sender)
            await hang_up_after("policy", request)
            await hang_up_after("smtpcbd", b"<half@slow.te")
        async with asyncio.timeout(10):
            await daemon.runtime.generation.settle()

    await while_answering(daemon, attack)
    slow = world.server(DOMAINS["slow.test"][0])
    async with asyncio.timeout(10):
        await slow.wait_idle()
    assert not halves & set(slow.rcpts), "half a request was verified"
    assert not [session for session in slow.log if session.closed_by_client], (
        "an abandoned callout was cut short instead of ending with QUIT")


async def test_pipelined_flood_on_one_connection(daemon: Daemon) -> None:
    count = 10_000

    async def attack() -> None:
        reader, writer = await connect(daemon.addresses()["policy"])
        request = policy_request("alice@pass.test")

        async def send() -> None:
            for _ in range(count // 100):
                writer.write(request * 100)
                await writer.drain()

        sender = asyncio.create_task(send())
        async with asyncio.timeout(60):
            for _ in range(count):
                assert await reader.readuntil(b"\n\n") == b"action=DUNNO\n\n"
        await sender
        writer.close()

    await while_answering(daemon, attack)
