"""Clients as Postfix and qpsmtpd speak to cbv, and a loopback world of sender domains."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from cbv.config import Config
from cbv.servers.daemon import Daemon
from cbv.testing import MXFarm, MXScript, Reply, start_farm
from tests.world import World

ANSWER_TIMEOUT = 10.0
_instances = itertools.count(1)

# One MX per sender domain, all on the farm's one port, as cbv dials them.
DOMAINS: dict[str, tuple[str, MXScript]] = {
    "pass.test": ("127.0.0.2", MXScript(rcpt=[("alice@pass.test", Reply(250, "2.1.5 Ok"))])),
    "fail.test": ("127.0.0.3", MXScript()),
    "grey.test": ("127.0.0.4", MXScript(greylist_seconds=3600)),
    "policy.test": ("127.0.0.5", MXScript(
        rcpt_reply_default=Reply(550, "5.7.1 <{addr}>: Client host rejected: Access denied"))),
    "slow.test": ("127.0.0.6", MXScript(delays={"rcpt": 0.4})),
}


async def sender_domains(world: World) -> MXFarm:
    farm = await start_farm({ip: script for ip, script in DOMAINS.values()})
    world.farms.append(farm)
    for domain, (ip, _) in DOMAINS.items():
        world.dns.add_mx(domain, [(10, f"mx.{domain}")])
        world.dns.add_a(f"mx.{domain}", ip)
    return farm


def server_config(world: World, farm: MXFarm, **sections: dict[str, Any]) -> Config:
    server = {"policy": "127.0.0.1:0", "smtpcbd": "127.0.0.1:0", "answer_within": 5.0}
    server.update(sections.pop("server", {}))
    return world.config(farm.port, server=server, **sections)


@asynccontextmanager
async def running(config: Config) -> AsyncIterator[Daemon]:
    daemon = Daemon(config, announce=lambda line: None)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.shutdown()


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def policy_request(sender: str, recipient: str = "bob@example.test", *, state: str = "RCPT",
                   instance: str | None = None, **extra: str) -> bytes:
    attributes = {
        "request": "smtpd_access_policy", "protocol_state": state, "protocol_name": "ESMTP",
        "client_address": "192.0.2.7", "client_name": "mail.sender.example",
        "helo_name": "mail.sender.example", "sender": sender, "recipient": recipient,
        "instance": instance or f"{next(_instances):x}.65530000.1234.0", "size": "0",
        "sasl_username": "",
    }
    attributes.update(extra)
    return "".join(f"{k}={v}\n" for k, v in attributes.items()).encode() + b"\n"


class PolicyClient:
    """One persistent connection, as a Postfix smtpd process keeps it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, address: str) -> PolicyClient:
        if address.startswith("unix:"):
            reader, writer = await asyncio.open_unix_connection(address[5:])
        else:
            reader, writer = await asyncio.open_connection(*split_address(address))
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> str:
        """The action of the next answer."""
        async with asyncio.timeout(ANSWER_TIMEOUT):
            data = await self.reader.readuntil(b"\n\n")
        text = data.decode()
        assert text.startswith("action="), text
        assert text.count("\n") == 2, text
        return text[len("action="):-2]

    async def ask(self, sender: str, recipient: str = "bob@example.test", **kwargs: str) -> str:
        await self.send(policy_request(sender, recipient, **kwargs))
        return await self.answer()

    async def closed_by_server(self) -> bool:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


async def smtpcbd(address: str, line: bytes, *, half_close: bool = False) -> str:
    """What the smtp_callback plugin does: connect, print one line, read one line."""
    reader, writer = await asyncio.open_connection(*split_address(address))
    try:
        writer.write(line)
        if half_close:
            writer.write_eof()
        await writer.drain()
        async with asyncio.timeout(ANSWER_TIMEOUT):
            answer = await reader.readline()
            assert await reader.read() == b"", "the listener closes after its one answer"
        return answer.decode("ascii")
    finally:
        writer.close()
