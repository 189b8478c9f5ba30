"""Hostile mail exchangers: every misbehaviour ends in a transient or unknown verdict within
the budget, with bounded memory, and leaves no socket, task or file descriptor behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result
from cbv.testing import FakeDNS, MXScript, RawReply, Reply
from tests.world import World, make_config

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
BUDGET_S = 3.0
ALICE = "alice@hostile.test"


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextlib.asynccontextmanager
async def raw_mx(fake_dns: FakeDNS, handler: Handler) -> AsyncIterator[int]:
    """A hand-written server on 127.0.0.2 published as hostile.test's MX; yields its port."""
    handlers: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            handlers.discard(task)

    server = await asyncio.start_server(serve, "127.0.0.2", 0)
    fake_dns.add_mx("hostile.test", [(10, "mx.hostile.test")])
    fake_dns.add_a("mx.hostile.test", "127.0.0.2")
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


def client_tasks() -> set[asyncio.Task[object]]:
    """Tasks other than the hostile server's own connection handlers."""
    return {t for t in asyncio.all_tasks() if "raw_mx" not in repr(t.get_coro())}


async def verify_hostile(fake_dns: FakeDNS, port: int) -> tuple[Result, Reason, float]:
    config = make_config(fake_dns.nameserver, port, callout={
        "command_timeout": 1.0, "connect_timeout": 1.0, "total_timeout": BUDGET_S})
    tasks_before = client_tasks()
    async with Verifier(config) as verifier:
        verdict = await verifier.verify(ALICE)
    await asyncio.sleep(0.05)
    assert client_tasks() == tasks_before
    return verdict.result, verdict.reason, verdict.duration_ms / 1000


async def banner_then(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      ehlo_reply: bytes) -> None:
    writer.write(b"220 hostile ESMTP\r\n")
    await reader.readline()
    writer.write(ehlo_reply)
    await writer.drain()
    await asyncio.sleep(10)


async def one_byte_per_interval(reader: asyncio.StreamReader,
                                writer: asyncio.StreamWriter) -> None:
    for byte in b"220 slowly but surely\r\n":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.2)


async def endless_multiline(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 hostile\r\n")
    await reader.readline()
    while True:
        writer.write(b"250-" + b"A" * 200 + b"\r\n")
        await writer.drain()


async def megabyte_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 " + b"x" * 1_048_576 + b"\r\n")
    await writer.drain()
    await asyncio.sleep(10)


async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(bytes(range(256)) * 4 + b"\r\n")
    await writer.drain()
    await asyncio.sleep(10)


async def invalid_utf8_then_ok(reader: asyncio.StreamReader,
                               writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 \xff\xfe\xc3 hostile \x00\x07\r\n")
    while line := await reader.readline():
        verb = line[:4].upper()
        if verb == b"QUIT":
            writer.write(b"221 \xff bye\r\n")
            break
        if verb == b"RCPT":
            writer.write(b"550 5.1.1 \xc3\x28 unknown \xed\xa0\x80\r\n")
        else:
            writer.write(b"250 ok \xff\r\n")
        await writer.drain()


async def half_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 hostile\r\n")
    await writer.drain()
    writer.write_eof()
    await asyncio.sleep(10)


async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 hostile\r\n")
    await writer.drain()
    await asyncio.sleep(10)


async def reset_after_banner(reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
    writer.write(b"220 hostile\r\n")
    await writer.drain()
    await reader.readline()
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.mark.parametrize(
    ("handler", "expected"),
    [
        (one_byte_per_interval, {Reason.TIMEOUT}),
        (endless_multiline, {Reason.TEMPFAIL}),
        (megabyte_line, {Reason.TEMPFAIL}),
        (garbage, {Reason.TEMPFAIL}),
        (lambda r, w: banner_then(r, w, b"250-ok\r\n999 out of range\r\n"), {Reason.TEMPFAIL}),
        (lambda r, w: banner_then(r, w, b"25\r\n"), {Reason.TEMPFAIL}),
        (lambda r, w: banner_then(r, w, b"250-ok\r\n220 changed code\r\n"), {Reason.TEMPFAIL}),
        (half_closed, {Reason.CONNECTION_FAILED}),
        (never_reads, {Reason.TIMEOUT}),
        (reset_after_banner, {Reason.CONNECTION_FAILED}),
    ],
    ids=["one-byte-at-a-time", "endless-multiline", "megabyte-line", "binary-garbage",
         "code-out-of-range", "code-missing", "code-changes-mid-reply", "half-closed",
         "never-reads", "reset"],
)
async def test_hostile_server_gives_a_bounded_transient_verdict(
    fake_dns: FakeDNS, handler: Handler, expected: set[Reason]
) -> None:
    fds_before = open_fds()
    tracemalloc.start()
    async with raw_mx(fake_dns, handler) as port:
        result, reason, seconds = await verify_hostile(fake_dns, port)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert result is Result.TRANSIENT
    assert reason in expected
    assert seconds < BUDGET_S + 0.5
    assert peak < 8 * 1024 * 1024
    assert open_fds() <= fds_before


async def test_invalid_utf8_is_read_not_fatal(fake_dns: FakeDNS) -> None:
    async with raw_mx(fake_dns, invalid_utf8_then_ok) as port:
        result, reason, _ = await verify_hostile(fake_dns, port)
    assert (result, reason) == (Result.FAIL, Reason.MAILBOX_UNKNOWN)


@pytest.mark.parametrize("stage", ["banner", "ehlo", "mail", "rcpt", "quit"])
async def test_reset_at_every_stage(world: World, stage: str) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(reset_at=stage, catch_all=True)})  # type: ignore[arg-type]
    fds_before = open_fds()
    verdict = await world.verify("alice@example.test")
    if stage == "quit":
        assert verdict.result is Result.PASS  # decided before QUIT; the reset changes nothing
    else:
        assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.CONNECTION_FAILED)
    assert open_fds() <= fds_before


async def test_raw_garbage_after_rcpt_keeps_the_decided_verdict(world: World) -> None:
    script = MXScript(rcpt=[("alice@example.test", Reply(250, "2.1.5 Ok"))],
                      unknown_reply=RawReply(b"\x00\xff garbage\r\n"))
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify("alice@example.test")
    assert verdict.result is Result.PASS
