"""Fair listeners: how many requests one connection may have parsed and waiting, the turn
the others get between its answers, what a client that resets costs, the connection cap
of every listener, and the smaller limits (smtpcbd line, HTTP head, milter packet, a
duplicated Postfix attribute)."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable, Iterator
from typing import cast

import pytest
import pytest_asyncio

from cbv.address import parse_address
from cbv.servers.admission import ConnectionCap
from cbv.servers.connection import MAX_PIPELINED, ConnectionTracker
from cbv.servers.daemon import Daemon
from cbv.servers.postfix import PolicyConnection
from tests.servers.clients import (
    PolicyClient,
    policy_request,
    running,
    sender_domains,
    server_config,
    split_address,
)
from tests.world import World

CACHED = "alice@pass.test"
DUNNO = b"action=DUNNO\n\n"
CAP = 3
WAIT = 10.0


class RecordingTransport:
    """Stands in for a client's transport: records the answers and the flow control."""

    def __init__(self, on_write: Callable[[], None] = lambda: None) -> None:
        self.answers: list[bytes] = []
        self.reading_paused = False
        self.closing = False
        self.answered = asyncio.Event()
        self.expected = 0
        self._on_write = on_write

    def write(self, data: bytes) -> None:
        self.answers.append(data)
        self._on_write()
        if len(self.answers) >= self.expected:
            self.answered.set()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    async def wait_for(self, count: int) -> None:
        self.expected = count
        if len(self.answers) < count:
            self.answered.clear()
        async with asyncio.timeout(WAIT):
            await self.answered.wait()


class Records(logging.Handler):
    """The log records of the daemon (and of asyncio) while a test runs."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.arrived = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.arrived.set()

    def named(self, message: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage() == message]

    async def wait_for(self, message: str) -> logging.LogRecord:
        async with asyncio.timeout(WAIT):
            while not (found := self.named(message)):
                self.arrived.clear()
                await self.arrived.wait()
        return found[0]


@pytest.fixture
def records() -> Iterator[Records]:
    handler = Records()
    loggers = [logging.getLogger(name) for name in ("cbv", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


@pytest_asyncio.fixture
async def daemon(world: World) -> AsyncIterator[Daemon]:
    farm = await sender_domains(world)
    config = server_config(world, farm, server={
        "milter": "127.0.0.1:0", "http": "127.0.0.1:0", "max_connections": CAP})
    async with running(config) as started:
        # Cached from now on, without a connection that could still count against the cap.
        await started.runtime.generation.verifier.verify(CACHED)
        yield started


def connection_on(daemon: Daemon, transport: RecordingTransport) -> PolicyConnection:
    connection = PolicyConnection(daemon.runtime, ConnectionTracker())
    connection.connection_made(cast(asyncio.BaseTransport, transport))
    return connection


async def connect(address: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(*split_address(address))


async def test_one_read_of_ten_thousand_requests_holds_at_most_the_queue_limit(
    daemon: Daemon,
) -> None:
    queued: list[int] = []
    transport = RecordingTransport(on_write=lambda: queued.append(connection.queued))
    connection = connection_on(daemon, transport)

    connection.data_received(policy_request(CACHED) * 10_000)
    assert connection.queued == MAX_PIPELINED
    assert transport.reading_paused

    await transport.wait_for(10_000)
    assert transport.answers == [DUNNO] * 10_000
    assert max(queued) <= MAX_PIPELINED


async def test_other_connections_are_answered_between_a_floods_cached_answers(
    daemon: Daemon,
) -> None:
    flood = RecordingTransport()
    connection_on(daemon, flood).data_received(policy_request(CACHED) * 10_000)
    other = RecordingTransport()
    connection_on(daemon, other).data_received(policy_request(CACHED))

    await other.wait_for(1)
    assert other.answers == [DUNNO]
    assert len(flood.answers) < MAX_PIPELINED, "the flood was answered first"
    await flood.wait_for(10_000)


async def test_a_cached_answer_goes_out_in_the_read_that_brought_it(daemon: Daemon) -> None:
    """No worker task and no waiting for a verdict held in memory; of a pipelined read
    only the first is answered at once, the rest in turn with the other connections."""
    transport = RecordingTransport()
    connection = connection_on(daemon, transport)

    connection.data_received(policy_request(CACHED) * 3)
    assert transport.answers == [DUNNO]
    assert connection.busy
    await transport.wait_for(3)
    assert transport.answers == [DUNNO] * 3


async def test_a_sender_not_in_the_cache_is_answered_by_the_worker(daemon: Daemon) -> None:
    transport = RecordingTransport()
    connection = connection_on(daemon, transport)

    connection.data_received(policy_request("nobody@fail.test"))
    assert transport.answers == []
    assert connection.busy
    await transport.wait_for(1)
    assert transport.answers[0].startswith(b"action=550 ")


async def test_a_messages_later_request_takes_the_verdict_its_first_was_answered_with(
    daemon: Daemon,
) -> None:
    transport = RecordingTransport()
    connection = connection_on(daemon, transport)
    connection.data_received(policy_request(CACHED, instance="7.65530000.1234.0"))
    await daemon.runtime.generation.verifier.cache.purge_address(parse_address(CACHED))

    connection.data_received(policy_request(CACHED, "carol@example.test",
                                            instance="7.65530000.1234.0"))
    assert transport.answers == [DUNNO, DUNNO]  # at once: no callout for the purged one


async def test_answers_stop_when_the_client_is_gone(daemon: Daemon) -> None:
    gone = RecordingTransport()
    connection = connection_on(daemon, gone)

    def reset_after_ten() -> None:
        if len(gone.answers) == 10:
            gone.closing = True  # as a write that fails leaves an asyncio transport
    gone._on_write = reset_after_ten
    connection.data_received(policy_request(CACHED) * 10_000)
    other = RecordingTransport()
    connection_on(daemon, other).data_received(policy_request(CACHED) * (MAX_PIPELINED * 2))

    await other.wait_for(MAX_PIPELINED * 2)
    assert len(gone.answers) == 10


async def test_a_pipelining_client_that_resets_costs_one_log_line(
    daemon: Daemon, records: Records,
) -> None:
    reader, writer = await connect(daemon.addresses()["policy"])
    writer.write(policy_request(CACHED) * 10_000)
    assert await reader.readexactly(len(DUNNO)) == DUNNO
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()

    gone = await records.wait_for("client gone, its answers dropped")
    assert gone.cbv_fields["listener"] == "policy"  # type: ignore[attr-defined]
    client = await PolicyClient.connect(daemon.addresses()["policy"])
    assert await client.ask(CACHED) == "DUNNO"
    await client.close()
    assert len(records.named("client gone, its answers dropped")) == 1
    assert [r for r in records.records if r.name == "asyncio"] == []


@pytest.mark.parametrize("listener", ["policy", "smtpcbd", "milter", "http"])
async def test_every_listener_closes_connections_past_its_cap_with_one_log_line(
    daemon: Daemon, records: Records, listener: str,
) -> None:
    address = daemon.addresses()[listener]
    held = [await connect(address) for _ in range(CAP)]
    refused = [await connect(address) for _ in range(2)]
    for reader, _ in refused:
        async with asyncio.timeout(WAIT):
            assert await reader.read() == b""
    [line] = records.named("connection limit reached, new connections closed")
    assert line.cbv_fields == {"listener": listener, "max_connections": CAP}  # type: ignore[attr-defined]
    if listener == "policy":
        first = PolicyClient(*held[0])
        assert await first.ask(CACHED) == "DUNNO", "the connections within the cap still work"
    for _, writer in held + refused:
        writer.close()


def test_the_cap_logs_again_only_once_the_listener_has_room() -> None:
    cap = ConnectionCap("policy")
    assert all(cap.admit(10) for _ in range(10))
    assert not cap.admit(10)
    cap.release()
    assert cap.admit(10), "room again for one"
    assert not cap.admit(10)
    assert cap.refused == 2
    assert cap.open == 10


async def test_smtpcbd_answers_an_overlong_line_without_waiting_for_its_newline(
    daemon: Daemon,
) -> None:
    reader, writer = await connect(daemon.addresses()["smtpcbd"])
    writer.write(b"<" + b"a" * 2000)
    async with asyncio.timeout(WAIT):
        answer = await reader.read()
    assert answer.startswith(b"TEMPFAIL:bad request; line longer than 1024 bytes"), answer
    writer.close()


@pytest.mark.parametrize("pieces", [1, 15], ids=["one write", "4 KiB writes"])
async def test_an_http_head_over_16_kib_is_refused_however_it_arrives(
    daemon: Daemon, pieces: int,
) -> None:
    head = (b"GET /healthz HTTP/1.1\r\nHost: cbv.test\r\n"
            + b"".join(b"X-Filler-%d: %s\r\n" % (n, b"x" * 1000) for n in range(60)) + b"\r\n")
    reader, writer = await connect(daemon.addresses()["http"])
    size = -(-len(head) // pieces)
    try:
        for start in range(0, len(head), size):
            writer.write(head[start:start + size])
            await writer.drain()
    except ConnectionError:
        pass  # refused before the rest was sent
    async with asyncio.timeout(WAIT):
        answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    writer.close()


async def test_an_http_head_within_the_limit_is_answered(daemon: Daemon) -> None:
    head = (b"GET /healthz HTTP/1.1\r\nHost: cbv.test\r\nConnection: close\r\n"
            + b"X-Filler: " + b"x" * 15_000 + b"\r\n\r\n")
    reader, writer = await connect(daemon.addresses()["http"])
    writer.write(head)
    async with asyncio.timeout(WAIT):
        answer = await reader.read()
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    writer.close()


async def test_a_milter_packet_over_the_limit_closes_the_connection_at_once(
    daemon: Daemon, records: Records,
) -> None:
    reader, writer = await connect(daemon.addresses()["milter"])
    writer.write(struct.pack(">I", 65_535 + 2) + b"L")  # 65,536 bytes of data announced
    async with asyncio.timeout(WAIT):
        assert await reader.read() == b""
    error = await records.wait_for("milter protocol error, connection closed")
    assert "exceeds the 65536-byte limit" in error.cbv_fields["reason"]  # type: ignore[attr-defined]
    writer.close()


async def test_a_duplicated_policy_attribute_is_malformed_not_a_local_exclusion(
    daemon: Daemon, records: Records,
) -> None:
    """Were the last `client_address` taken, 127.0.0.1 would exclude the request as local."""
    client = await PolicyClient.connect(daemon.addresses()["policy"])
    request = policy_request("nobody@fail.test").replace(
        b"\n\n", b"\nclient_address=127.0.0.1\n\n")
    await client.send(request)
    assert await client.answer() == "DUNNO"  # malformed, fail open
    [malformed] = records.named("malformed policy request")
    assert malformed.cbv_fields == {"reason": "attribute given twice: 'client_address'"}  # type: ignore[attr-defined]
    assert records.named("decision") == []
    assert (await client.ask("nobody@fail.test")).startswith("550 ")
    await client.close()
