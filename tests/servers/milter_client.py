"""An MTA's side of a milter connection, as Postfix's milter8 client speaks it, built on
cbv's own codec: commands encoded, responses decoded, each step sent only if the
negotiation did not leave it out."""

from __future__ import annotations

import asyncio

from cbv.protocol.milter import (
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIP,
    Command,
    Connect,
    DefineMacro,
    Mail,
    NegotiationReply,
    OptionNegotiation,
    Rcpt,
    Response,
    ResponseDecoder,
    encode_command,
)
from cbv.protocol.milter_responses import FINAL_RESPONSES
from tests.servers.clients import ANSWER_TIMEOUT, split_address

POSTFIX_OFFER = OptionNegotiation(6, SMFIF(0x1FF), SMFIP(0x1FFFFF))
"""Postfix milter8.c with `milter_protocol = 6`: every action, every protocol flag."""


class MilterClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = ResponseDecoder()
        self.received: list[Response] = []
        self.reply: NegotiationReply | None = None

    @classmethod
    async def connect(cls, address: str) -> MilterClient:
        if address.startswith("unix:"):
            reader, writer = await asyncio.open_unix_connection(address[5:])
        else:
            reader, writer = await asyncio.open_connection(*split_address(address))
        return cls(reader, writer)

    @classmethod
    async def negotiated(cls, address: str, client: str = "192.0.2.7") -> MilterClient:
        """Connected, options agreed, and the SMTP client's CONNECT sent."""
        milter = await cls.connect(address)
        await milter.negotiate()
        await milter.send(Connect("mail.sender.example", SMFIA.INET, 40312, client))
        return milter

    async def negotiate(self, offer: OptionNegotiation = POSTFIX_OFFER) -> NegotiationReply:
        [reply] = await self.ask(offer)
        assert isinstance(reply, NegotiationReply), reply
        self.reply = reply
        return reply

    def left_out(self, flag: SMFIP) -> bool:
        assert self.reply is not None
        return flag in self.reply.protocol

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, *commands: Command) -> None:
        await self.write(b"".join(encode_command(command) for command in commands))

    async def responses(self) -> list[Response]:
        """Everything up to and including the next final response (or negotiation reply)."""
        found: list[Response] = []
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while True:
                while self.received:
                    response = self.received.pop(0)
                    found.append(response)
                    if isinstance(response, (*FINAL_RESPONSES, NegotiationReply)):
                        return found
                data = await self.reader.read(65536)
                assert data, f"the filter closed the connection after {found}"
                self.received.extend(self.decoder.feed(data))

    async def ask(self, *commands: Command) -> list[Response]:
        await self.send(*commands)
        return await self.responses()

    async def mail(self, sender: str, **macros: str) -> list[Response] | None:
        """MAIL FROM with its macros; None when the filter does not answer MAIL."""
        commands: list[Command] = [DefineMacro(SMFIC.MAIL, tuple(macros.items())),
                                   Mail((f"<{sender}>", "SIZE=100"))]
        if self.left_out(SMFIP.NOMAIL):
            return None
        if self.left_out(SMFIP.NR_MAIL):
            await self.send(*commands)
            return None
        return await self.ask(*commands)

    async def rcpt(self, recipient: str) -> list[Response] | None:
        if self.left_out(SMFIP.NORCPT):
            return None
        command = Rcpt((f"<{recipient}>",))
        if self.left_out(SMFIP.NR_RCPT):
            await self.send(command)
            return None
        return await self.ask(command)

    async def closed_by_filter(self) -> bool:
        async with asyncio.timeout(ANSWER_TIMEOUT):
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return True

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()
