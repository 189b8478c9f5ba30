"""The asyncio adapter that moves bytes for a `Dialogue`; no decisions are made here."""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from cbv.callout.client_protocol import SmtpClientProtocol
from cbv.callout.connector import Connector, EgressFailed
from cbv.callout.dialogue import (
    QUIT,
    ConnectionLost,
    Dialogue,
    Quit,
    Send,
    StartTLS,
    lose_connection,
)
from cbv.callout.pacer import TurnPacer
from cbv.callout.plan import Target
from cbv.callout.stage_timer import StageTimer
from cbv.egress.table import Egress
from cbv.model import Reason, Stage, TranscriptLine
from cbv.protocol.smtp import Reply, ReplyError

QUIT_WAIT = 1.0


@dataclass(frozen=True, slots=True)
class SessionOptions:
    connect_timeout: float
    command_timeout: float
    max_reply_bytes: int
    tls_context: ssl.SSLContext | None
    pacer: TurnPacer | None = None  # spreads waves of replies over event-loop turns


class TlsHandshakeFailed(Exception):
    """STARTTLS was accepted but the handshake failed: retry this host in plain text."""


class _Transcript:
    """The session's lines, for callouts that asked for a transcript."""

    __slots__ = ("_host", "_lines", "_started")

    def __init__(self, lines: list[TranscriptLine], target: Target) -> None:
        self._lines = lines
        self._host = f"{target.host}[{target.ip}]:{target.port}"
        self._started = time.monotonic()

    def add(self, direction: str, text: str) -> None:
        at_ms = round((time.monotonic() - self._started) * 1000, 3)
        self._lines.append(TranscriptLine(host=self._host, direction=direction, line=text,
                                          at_ms=at_ms))

    def sent(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.add("C", line)

    def received(self, reply: Reply) -> None:
        last = len(reply.lines) - 1
        for i, line in enumerate(reply.lines):
            self.add("S", f"{reply.code}{' ' if i == last else '-'}{line}")


@dataclass(frozen=True, slots=True)
class Route:
    """How sessions reach their targets: the connector and the egress it goes through."""

    connector: Connector
    egress: Egress


def _budget(stage_timeout: float, deadline: float) -> float:
    return max(0.0, min(stage_timeout, deadline - time.monotonic()))


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

    One coroutine frame for the whole session, suspended on one future at a time (a
    callout in flight costs memory per frame and per object it keeps).

    Raises TlsHandshakeFailed so the caller can retry the host without STARTTLS, and
    EgressFailed so it can retry through the next egress.
    """
    log = _Transcript(transcript, target) if transcript is not None else None
    if log:
        log.add("*", f"connecting through egress {route.egress}")
    steps = dialogue.steps()
    timer = StageTimer()
    connection = SmtpClientProtocol(options.max_reply_bytes, options.pacer)
    stage = Stage.CONNECT
    graceful = False
    try:
        action = next(steps)  # the banner, read once connected
        lost = await _connect(target, route, connection, timer,
                              _budget(options.connect_timeout, deadline), log)
        if lost is not None:
            lose_connection(steps, lost)
            return
        while not isinstance(action, Quit):
            if isinstance(action, StartTLS):
                await _start_tls(connection, options, deadline, log)
                action = steps.send([])
                continue
            assert isinstance(action, Send)
            if action.data:
                if log:
                    log.sent(action.data)
                connection.write(action.data)
            replies: list[Reply] = []
            stages = action.stages
            while len(replies) < len(stages):  # no iterator kept over the waits
                stage = stages[len(replies)]  # what a failure from here on is reported at
                if not connection.has_reply:
                    with timer.stage(_budget(options.command_timeout, deadline)):
                        await connection.arrival()
                replies.append(connection.take())
                if log:
                    log.received(replies[-1])
            action = steps.send(replies)
            # The dialogue has classified them: not kept across the waits that follow.
            del replies
        # The QUIT wait in this frame, not a coroutine of its own per callout.
        try:
            if not action.said:
                if log:
                    log.sent(QUIT)
                connection.write(QUIT)
            if not connection.has_reply:
                with timer.stage(min(QUIT_WAIT, _budget(QUIT_WAIT, deadline))):
                    await connection.arrival()
            quit_reply = connection.take()
            if log:
                log.received(quit_reply)
        except (TimeoutError, OSError, ConnectionError, ReplyError):
            pass
        graceful = True
    except TimeoutError:
        if log:
            log.add("*", f"timeout at {stage}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.TIMEOUT, f"no reply at {stage} within the timeout"))
    except ReplyError as exc:
        if log:
            log.add("*", f"protocol error: {exc}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.TEMPFAIL, f"protocol error at {stage}: {exc}"))
    except (OSError, ConnectionError) as exc:
        if log:
            log.add("*", f"connection lost at {stage}: {exc}")
        lose_connection(steps, ConnectionLost(
            stage, Reason.CONNECTION_FAILED, f"connection lost at {stage}: {exc}"))
    finally:
        timer.close()
        steps.close()
        if graceful:
            connection.close()
        else:
            connection.abort()


async def _connect(target: Target, route: Route, connection: SmtpClientProtocol,
                   timer: StageTimer, seconds: float, log: _Transcript | None
                   ) -> ConnectionLost | None:
    """Connects `connection`; what the dialogue is told when that fails (EgressFailed
    goes up to the runner)."""
    try:
        with timer.stage(seconds):
            await route.connector.connect(target, route.egress, connection)
    except EgressFailed as exc:
        if log:
            log.add("*", str(exc))
        raise
    except TimeoutError:
        if log:
            log.add("*", "connect timed out")
        return ConnectionLost(Stage.CONNECT, Reason.TIMEOUT, "connect timed out")
    except OSError as exc:
        detail = exc.strerror or str(exc)
        if log:
            log.add("*", f"connect failed: {detail}")
        return ConnectionLost(Stage.CONNECT, Reason.CONNECTION_FAILED, detail)
    return None


async def _start_tls(connection: SmtpClientProtocol, options: SessionOptions, deadline: float,
                     log: _Transcript | None) -> None:
    if connection.pending:
        # Plain text that arrived after "220 ready" would be read as if it came
        # through TLS (CVE-2011-0411 style injection): refuse the upgrade.
        raise TlsHandshakeFailed("data after the STARTTLS reply")
    assert options.tls_context is not None
    try:
        await connection.start_tls(
            options.tls_context, _budget(options.command_timeout, deadline) or 0.001)
    except (ssl.SSLError, OSError, TimeoutError, ConnectionError) as exc:
        raise TlsHandshakeFailed(str(exc) or type(exc).__name__) from None
    if log:
        log.add("*", "TLS established")
