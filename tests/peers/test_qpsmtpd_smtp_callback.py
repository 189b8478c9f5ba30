"""qpsmtpd's own smtp_callback plugin, unchanged, asking cbv's smtpcbd listener.

A real qpsmtpd-forkserver parses cbv's answer line with the plugin's split(/:/) and
turns it into its SMTP replies; the test speaks SMTP to qpsmtpd as a sending MTA would.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
import pytest_asyncio

from cbv.servers.logs import fields_of
from tests.peers.qpsmtpd_server import Qpsmtpd
from tests.servers.clients import running, sender_domains, server_config
from tests.world import World

pytestmark = pytest.mark.peers

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}"


class SMTPClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def reply(self) -> tuple[int, str]:
        lines = []
        async with asyncio.timeout(15):
            while True:
                line = (await self.reader.readline()).decode().rstrip("\r\n")
                assert line, "qpsmtpd closed the connection"
                lines.append(line[4:])
                if line[3:4] != "-":
                    return int(line[:3]), "\n".join(lines)

    async def command(self, line: str) -> tuple[int, str]:
        self.writer.write(f"{line}\r\n".encode())
        await self.writer.drain()
        return await self.reply()

    async def sender_then_recipient(self, sender: str) -> tuple[int, str]:
        assert (await self.command("RSET"))[0] == 250
        assert (await self.command(f"MAIL FROM:<{sender}>"))[0] == 250
        return await self.command("RCPT TO:<bob@example.test>")


@pytest_asyncio.fixture
async def qpsmtpd_asking_cbv(world: World) -> AsyncIterator[Callable[..., Awaitable[SMTPClient]]]:
    """Starts cbv (smtpcbd only) and a qpsmtpd asking it; returns a greeted SMTP client."""
    farm = await sender_domains(world)
    stack = AsyncExitStack()

    async def start(answer_within: float = 5.0) -> SMTPClient:
        config = server_config(world, farm, server={"policy": "", "answer_within": answer_within})
        daemon = await stack.enter_async_context(running(config))
        server = Qpsmtpd(daemon.addresses()["smtpcbd"], "example.test")
        stack.push_async_callback(asyncio.to_thread, server.stop)
        await asyncio.to_thread(server.start)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        stack.callback(writer.close)
        client = SMTPClient(reader, writer)
        try:
            greeting = await client.reply()
        except TimeoutError:
            raise AssertionError(f"qpsmtpd sent no banner; its log:\n{server.log()}") from None
        assert greeting[0] == 220
        assert (await client.command("EHLO mail.sender.example"))[0] == 250
        return client

    async with stack:
        yield start


async def test_qpsmtpd_rejects_defers_and_accepts_on_cbvs_word(
    qpsmtpd_asking_cbv: Callable[..., Awaitable[SMTPClient]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    client = await qpsmtpd_asking_cbv()

    code, text = await client.sender_then_recipient("nobody@fail.test")
    assert code == 550
    assert re.fullmatch(
        "nobody@fail.test doesn't exist according to mx.fail.test: mailbox_unknown 550 5.1.1 "
        "<nobody@fail.test>; Recipient address rejected; User unknown in local recipient "
        rf"table. Unchanged since {STAMP}, next check {STAMP} \(#5.1.8\)", text), text

    code, text = await client.sender_then_recipient("someone@grey.test")
    assert code == 450
    assert text.startswith("someone@grey.test has a temporary problem according to "
                           "mx.grey.test: greylisted 450 4.2.0"), text

    assert (await client.sender_then_recipient("alice@pass.test"))[0] == 250
    assert (await client.sender_then_recipient("someone@policy.test"))[0] == 250
    assert (await client.sender_then_recipient(""))[0] == 250

    asked = [fields_of(r) for r in caplog.records if r.name == "cbv.decision"]
    assert [(d["listener"], d["address"], d["result"]) for d in asked] == [
        ("smtpcbd", "nobody@fail.test", "fail"),
        ("smtpcbd", "someone@grey.test", "transient"),
        ("smtpcbd", "alice@pass.test", "pass"),
        ("smtpcbd", "someone@policy.test", "unknown"),
    ], "the plugin itself skips the null sender"


async def test_qpsmtpd_defers_while_cbv_is_still_verifying(
    qpsmtpd_asking_cbv: Callable[..., Awaitable[SMTPClient]]
) -> None:
    client = await qpsmtpd_asking_cbv(answer_within=0.05)
    code, text = await client.sender_then_recipient("someone@slow.test")
    assert code == 450
    assert text.startswith("someone@slow.test has a temporary problem according to -: "
                           "address verification in progress."), text
