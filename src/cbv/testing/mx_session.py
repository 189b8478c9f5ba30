"""One connection to a ScriptedMX, played from its script."""

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import get_args

from cbv.testing.greylist import Greylist
from cbv.testing.mx_script import MXScript, Stage, first_match
from cbv.testing.replies import AnyReply, Reply
from cbv.testing.session_log import SessionLog
from cbv.testing.tls import server_context

NEED_HELO = Reply(503, "5.5.1 Error: send HELO/EHLO first")
NESTED_MAIL = Reply(503, "5.5.1 Error: nested MAIL command")
NEED_MAIL = Reply(503, "5.5.1 Error: need MAIL command")
NO_STARTTLS = Reply(502, "5.5.1 Error: command not implemented")
TLS_ACTIVE = Reply(554, "5.5.1 Error: TLS already active")
START_DATA = Reply(354, "End data with <CR><LF>.<CR><LF>")
OK = Reply(250, "2.0.0 Ok")
BYE = Reply(221, "2.0.0 Bye")
NOT_TLS = b"\x00\xffthis is not a TLS handshake\r\n"
END_OF_DATA = (b".\r\n", b".\n")

# Each command's stage is its verb in lower case.
VERBS: dict[str, Stage] = {stage.upper(): stage for stage in get_args(Stage) if stage != "banner"}

# Handlers return False once the connection is over.
Handler = Callable[[str], Awaitable[bool]]


class MXSession:
    """Tracks just enough SMTP state (greeting, transaction, TLS) to misbehave realistically."""

    def __init__(
        self,
        script: MXScript,
        name: str,
        greylist: Greylist,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        log: SessionLog,
    ) -> None:
        self._script = script
        self._name = name
        self._greylist = greylist
        self._reader = reader
        self._writer = writer
        self._log = log
        self._greeted = False
        self._in_mail = False
        self._sender = ""
        self._rcpts_in_transaction = 0
        self._handlers: dict[Stage, Handler] = {
            "ehlo": self._ehlo,
            "helo": self._helo,
            "starttls": self._starttls,
            "vrfy": self._vrfy,
            "mail": self._mail,
            "rcpt": self._rcpt,
            "data": self._data,
            "rset": self._rset,
            "noop": self._noop,
            "quit": self._quit,
        }

    async def run(self) -> None:
        if not await self._enter("banner"):
            return
        banner = self._script.banner
        if banner is not None:
            await self._send(banner)
        while line := await self._reader.readline():
            command = line.rstrip(b"\r\n").decode("utf-8", "replace")
            self._log.commands.append(command)
            # A tarpit (no banner) listens but never answers.
            if banner is not None and not await self._dispatch(command):
                return
        self._log.closed_by_client = True

    async def _dispatch(self, command: str) -> bool:
        verb, _, arg = command.partition(" ")
        stage = VERBS.get(verb.upper())
        if stage is None:
            await self._send(self._script.unknown_reply)
            return True
        if not await self._enter(stage):
            return False
        return await self._handlers[stage](arg)

    async def _enter(self, stage: Stage) -> bool:
        """Applies the stage's delay, then its scripted drop or reset."""
        delay = self._script.delay(stage)
        if delay > 0:
            await asyncio.sleep(delay)
        if stage == self._script.reset_at:
            sock = self._writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self._writer.transport.abort()
            return False
        return stage != self._script.drop_at

    async def _send(self, reply: AnyReply, addr: str = "") -> None:
        self._writer.write(reply.render(addr, self._name))
        await self._writer.drain()

    async def _greet(self, reply: AnyReply) -> bool:
        await self._send(reply)
        self._greeted = reply.positive
        self._in_mail = False
        return True

    async def _ehlo(self, arg: str) -> bool:
        return await self._greet(self._script.ehlo_reply(self._log.tls))

    async def _helo(self, arg: str) -> bool:
        return await self._greet(self._script.helo)

    async def _starttls(self, arg: str) -> bool:
        if not self._script.starttls or self._log.tls:
            await self._send(TLS_ACTIVE if self._log.tls else NO_STARTTLS)
            return True
        reply = self._script.starttls_reply
        await self._send(reply)
        if not reply.positive:
            return True
        if self._script.starttls_break:
            self._writer.write(NOT_TLS)
            await self._writer.drain()
            return False
        await self._writer.start_tls(server_context())
        self._log.tls = True
        self._greeted = False  # RFC 3207: the client must greet again over TLS
        self._in_mail = False
        return True

    async def _vrfy(self, arg: str) -> bool:
        addr = _bare(arg)
        await self._send(self._script.vrfy_reply(addr), addr)
        return True

    async def _mail(self, arg: str) -> bool:
        if not self._greeted or self._in_mail:
            await self._send(NESTED_MAIL if self._in_mail else NEED_HELO)
            return True
        sender = _path(arg)
        reply = self._script.mail_reply(sender)
        await self._send(reply, sender)
        self._in_mail = reply.positive
        self._sender = sender
        self._rcpts_in_transaction = 0
        return True

    async def _rcpt(self, arg: str) -> bool:
        addr = _path(arg)
        self._log.rcpts.append(addr)
        if not self._in_mail:
            await self._send(NEED_MAIL)
            return True
        script = self._script
        self._rcpts_in_transaction += 1
        limit = script.max_rcpts_per_transaction
        if limit is not None and self._rcpts_in_transaction > limit:
            await self._send(script.too_many_rcpts_reply, addr)
            return True
        sender_refused = first_match(script.sender_refused_at_rcpt, self._sender)
        if sender_refused is not None:
            await self._send(sender_refused, self._sender)
            return True
        greylisted = script.greylisting and self._greylist.blocks(
            addr, script.greylist_seconds, script.greylist_attempts
        )
        await self._send(script.greylist_reply if greylisted else script.rcpt_reply(addr), addr)
        return True

    async def _data(self, arg: str) -> bool:
        """Takes the message so a client that wrongly sends one sees a normal server."""
        await self._send(START_DATA)
        while (line := await self._reader.readline()) not in END_OF_DATA:
            if not line:
                self._log.closed_by_client = True
                return False
        self._in_mail = False
        await self._send(self._script.data_reply)
        return True

    async def _rset(self, arg: str) -> bool:
        self._in_mail = False
        self._rcpts_in_transaction = 0
        await self._send(OK)
        return True

    async def _noop(self, arg: str) -> bool:
        await self._send(OK)
        return True

    async def _quit(self, arg: str) -> bool:
        await self._send(BYE)
        return False


def _path(arg: str) -> str:
    """ "FROM:<a@b> SIZE=9" -> "a@b", tolerating a space after the colon or no brackets."""
    return _bare(arg.partition(":")[2])


def _bare(text: str) -> str:
    text = text.strip()
    if text.startswith("<"):
        return text[1:].partition(">")[0]
    return text.split(maxsplit=1)[0] if text else ""
