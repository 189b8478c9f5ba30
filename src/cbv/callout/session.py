"""The asyncio adapter that moves bytes for a `Dialogue`; no decisions are made here."""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass

from cbv.callout.connector import Connector, EgressFailed, Stream
from cbv.callout.dialogue import (
    Action,
    ConnectionLost,
    Dialogue,
    Quit,
    Send,
    StartTLS,
    Steps,
    lose_connection,
)
from cbv.callout.plan import Target
from cbv.callout.stage_timer import StageTimer
from cbv.egress.table import Egress
from cbv.model import Reason, Stage, TranscriptLine
from cbv.protocol.smtp import Reply, ReplyError, ReplyParser, encode_command

READ_CHUNK = 16_384
QUIT_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class SessionOptions:
    connect_timeout: float
    command_timeout: float
    max_reply_bytes: int
    tls_context: ssl.SSLContext | None


class TlsHandshakeFailed(Exception):
    """STARTTLS was accepted but the handshake failed: retry this host in plain text."""


class _Transcript:
    def __init__(self, lines: list[TranscriptLine] | None, host: str, started: float) -> None:
        self._lines = lines
        self._host = host
        self._started = started

    def add(self, direction: str, text: str) -> None:
        if self._lines is not None:
            at_ms = round((time.monotonic() - self._started) * 1000, 3)
            self._lines.append(TranscriptLine(host=self._host, direction=direction, line=text,
                                              at_ms=at_ms))

    def sent(self, data: bytes) -> None:
        if self._lines is not None:
            for line in data.decode("utf-8", "replace").splitlines():
                self.add("C", line)

    def received(self, reply: Reply) -> None:
        if self._lines is not None:
            last = len(reply.lines) - 1
            for i, line in enumerate(reply.lines):
                self.add("S", f"{reply.code}{' ' if i == last else '-'}{line}")


class _Connection:
    """One TCP connection with the reply parser and the callout's deadline."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        options: SessionOptions,
        deadline: float,
        transcript: _Transcript,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.options = options
        self.deadline = deadline
        self.transcript = transcript
        self.parser = ReplyParser(max_reply_bytes=options.max_reply_bytes)
        self.ready: list[Reply] = []
        self.timer = StageTimer()

    def budget(self, stage_timeout: float) -> float:
        return max(0.0, min(stage_timeout, self.deadline - time.monotonic()))

    async def read_reply(self) -> Reply:
        if not self.ready:  # replies to pipelined commands often come together: no wait
            with self.timer.stage(self.budget(self.options.command_timeout)):
                await self._receive()
        return self._take_reply()

    async def _receive(self) -> None:
        while not self.ready:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                raise ConnectionResetError("connection closed by the server")
            self.ready.extend(self.parser.feed(data))

    def _take_reply(self) -> Reply:
        reply = self.ready.pop(0)
        self.transcript.received(reply)
        return reply

    def write(self, data: bytes) -> None:
        self.transcript.sent(data)
        self.writer.write(data)

    async def start_tls(self) -> None:
        if self.ready or self.parser.pending:
            # Plain text that arrived after "220 ready" would be read as if it came
            # through TLS (CVE-2011-0411 style injection): refuse the upgrade.
            raise TlsHandshakeFailed("data after the STARTTLS reply")
        assert self.options.tls_context is not None
        try:
            await self.writer.start_tls(
                self.options.tls_context,
                ssl_handshake_timeout=self.budget(self.options.command_timeout) or 0.001,
            )
        except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
            raise TlsHandshakeFailed(str(exc) or type(exc).__name__) from None
        self.transcript.add("*", "TLS established")

    async def quit(self) -> None:
        try:
            self.write(encode_command("QUIT"))
            with self.timer.stage(min(QUIT_WAIT, self.budget(QUIT_WAIT))):
                await self.writer.drain()
                await self._receive()
            self._take_reply()
        except (TimeoutError, OSError, ConnectionError, ReplyError):
            pass


@dataclass(frozen=True, slots=True)
class Route:
    """How sessions reach their targets: the connector and the egress it goes through."""

    connector: Connector
    egress: Egress


async def _connect(
    target: Target, route: Route, options: SessionOptions, deadline: float
) -> Stream:
    timeout = max(0.0, min(options.connect_timeout, deadline - time.monotonic()))
    async with asyncio.timeout(timeout):
        return await route.connector.connect(target, route.egress)


async def run_session(
    target: Target,
    dialogue: Dialogue,
    route: Route,
    options: SessionOptions,
    deadline: float,
    transcript: list[TranscriptLine] | None = None,
) -> None:
    """Run `dialogue` against `target` through `route`; failures are reported into the
    dialogue.

    Raises TlsHandshakeFailed so the caller can retry the host without STARTTLS, and
    EgressFailed so it can retry through the next egress.
    """
    log = _Transcript(transcript, f"{target.host}[{target.ip}]:{target.port}", time.monotonic())
    log.add("*", f"connecting through egress {route.egress}")
    steps = dialogue.steps()
    try:
        banner = next(steps)  # read once connected
        try:
            reader, writer = await _connect(target, route, options, deadline)
        except EgressFailed as exc:
            log.add("*", str(exc))
            raise
        except TimeoutError:
            log.add("*", "connect timed out")
            lost = ConnectionLost(Stage.CONNECT, Reason.TIMEOUT, "connect timed out")
        except OSError as exc:
            detail = exc.strerror or str(exc)
            log.add("*", f"connect failed: {detail}")
            lost = ConnectionLost(Stage.CONNECT, Reason.CONNECTION_FAILED, detail)
        else:
            await _converse(steps, banner, _Connection(reader, writer, options, deadline, log))
            return
        lose_connection(steps, lost)
    finally:
        steps.close()


async def _converse(steps: Steps, action: Action, connection: _Connection) -> None:
    """Carry out the dialogue's actions until it quits or the connection is lost."""
    log = connection.transcript
    stage = Stage.BANNER
    graceful = False
    try:
        while not isinstance(action, Quit):
            if isinstance(action, StartTLS):
                await connection.start_tls()
                action = steps.send([])
                continue
            assert isinstance(action, Send)
            stage = action.stage
            if action.commands:
                connection.write(b"".join(c.line for c in action.commands))
            replies: list[Reply] = []
            for command in action.commands or (None,):
                stage = command.stage if command is not None else action.stage
                replies.append(await connection.read_reply())
            action = steps.send(replies)
        await connection.quit()
        graceful = True
    except TimeoutError:
        log.add("*", f"timeout at {stage}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.TIMEOUT, f"no reply at {stage} within the timeout"))
    except ReplyError as exc:
        log.add("*", f"protocol error: {exc}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.TEMPFAIL, f"protocol error at {stage}: {exc}"))
    except (OSError, ConnectionError) as exc:
        log.add("*", f"connection lost at {stage}: {exc}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.CONNECTION_FAILED, f"connection lost at {stage}: {exc}"))
    finally:
        connection.timer.close()
        if graceful:
            connection.writer.close()
        else:
            connection.writer.transport.abort()
