"""A deliberately dumb SMTP client, so ScriptedMX is tested without cbv's own client."""

import asyncio
import contextlib
import ssl
from typing import Protocol

from cbv.testing import ScriptedMX

IO_TIMEOUT = 5.0


def insecure_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Connect(Protocol):
    async def __call__(self, mx: ScriptedMX, host: str | None = None) -> "RawSMTP": ...


class RawSMTP:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, mx: ScriptedMX, host: str | None = None) -> "RawSMTP":
        reader, writer = await asyncio.open_connection(host or mx.host, mx.port)
        return cls(reader, writer)

    async def reply(self) -> tuple[int, list[str]]:
        """Reads one possibly multi-line reply: (code, [text of each line])."""
        lines: list[str] = []
        async with asyncio.timeout(IO_TIMEOUT):
            while True:
                raw = await self.reader.readline()
                if not raw:
                    raise ConnectionError("server closed the connection")
                line = raw.decode().rstrip("\r\n")
                lines.append(line[4:])
                if line[3:4] != "-":
                    return int(line[:3]), lines

    async def send(self, command: str) -> None:
        self.writer.write(f"{command}\r\n".encode())
        await self.writer.drain()

    async def cmd(self, command: str) -> tuple[int, list[str]]:
        await self.send(command)
        return await self.reply()

    async def starttls(self) -> None:
        async with asyncio.timeout(IO_TIMEOUT):
            await self.writer.start_tls(insecure_context(), server_hostname="mx.test")

    async def at_eof(self) -> bool:
        """True once the server has closed its side."""
        async with asyncio.timeout(IO_TIMEOUT):
            return await self.reader.read() == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()
