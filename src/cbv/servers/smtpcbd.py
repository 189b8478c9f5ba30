"""The smtpcbd listener: one line in, one line out, then the connection is closed (so
Exim's `${readsocket}` is never left waiting for the end of input)."""

from __future__ import annotations

import logging
import time

from cbv.cache.records import Lifetimes
from cbv.config import CacheConfig, Config
from cbv.model import Result, Verdict
from cbv.policy import Decision, RequestContext, RequestKind
from cbv.policy.decision import EXCLUDED, PENDING
from cbv.protocol.smtpcbd import (
    NO_SERVER,
    BadRequest,
    CallbackEvent,
    Code,
    LineParser,
    format_response,
)
from cbv.servers.connection import ConnectionTracker, RequestConnection
from cbv.servers.logs import DECISIONS, OwnFields, event
from cbv.servers.runtime import Answered, Runtime

LOG = logging.getLogger("cbv.smtpcbd")
SMTPCBD_FIELDS = OwnFields()

# unknown says nothing against the address, as site policy's on_unknown = "accept"
CODES = {
    Result.PASS: Code.OK,
    Result.FAIL: Code.FAIL,
    Result.TRANSIENT: Code.TEMPFAIL,
    Result.UNKNOWN: Code.OK,
}


def verdict_message(verdict: Verdict) -> str:
    """The reason, then the deciding reply: the plugin shows it after "according to MX"."""
    reply = verdict.reply
    if reply is not None:
        said = " ".join(str(p) for p in (reply.code, reply.enhanced, reply.text) if p)
        return f"{verdict.reason.value} {said.splitlines()[0] if said else ''}"
    if verdict.detail:
        return f"{verdict.reason.value} ({verdict.detail})"
    return verdict.reason.value


def callback_answer(decision: Decision, verdict: Verdict | None, cache: CacheConfig,
                    fail_open: bool, now: float) -> bytes:
    """The verdict's code; site policy's exclusions and dry run apply, its actions do not
    (the client decides what FAIL and TEMPFAIL mean for its mail)."""
    if verdict is None:
        if decision.result == EXCLUDED:
            code, message = Code.OK, f"not checked ({decision.reason})"
        elif decision.result == PENDING:
            code, message = Code.TEMPFAIL, "address verification in progress"
        else:
            code = Code.OK if fail_open else Code.TEMPFAIL
            message = "verification failed (internal error)"
        return format_response(code, message, decision.address, NO_SERVER, int(now), int(now))
    code = CODES[verdict.result]
    message = verdict_message(verdict)
    if decision.dry_run and code is not Code.OK:
        code, message = Code.OK, f"dry run, would be {code.value}: {message}"
    checked = verdict.checked_at.timestamp()
    expires = (verdict.expires_at.timestamp() if verdict.expires_at is not None
               else checked + Lifetimes.from_config(cache).ttl(verdict.result))
    return format_response(code, message, verdict.address, verdict.mx or NO_SERVER,
                           int(checked), int(expires))


class CallbackConnection(RequestConnection[CallbackEvent]):
    listener = "smtpcbd"
    one_shot = True

    def __init__(self, runtime: Runtime, tracker: ConnectionTracker) -> None:
        self._lines = LineParser()
        super().__init__(runtime, tracker, self._lines)

    def receive_end(self) -> None:
        self._lines.end_of_input_reached()

    async def answer(self, request: CallbackEvent) -> bytes:
        started = time.perf_counter()
        if isinstance(request, BadRequest):
            event(LOG, logging.WARNING, "malformed smtpcbd request", reason=request.reason)
            self._runtime.telemetry.failed("smtpcbd", "malformed_request")
            now = int(time.time())
            return format_response(Code.TEMPFAIL, f"bad request: {request.reason}", "",
                                   NO_SERVER, now, now)
        return await self.decided(
            RequestContext(RequestKind.LOOKUP, request.sender),
            lambda answered, generation: self._respond(answered, generation.config, started),
        )

    def _respond(self, answered: Answered, config: Config, started: float) -> bytes:
        decision = answered.decision
        assert decision is not None, "site policy decides every lookup"
        line = callback_answer(decision, answered.verdict, config.cache,
                               config.server.fail_open, time.time())
        seconds = time.perf_counter() - started
        self._runtime.telemetry.answered("smtpcbd", decision, seconds)
        if DECISIONS.wanted():
            DECISIONS.write(
                None,
                lambda: {"listener": "smtpcbd", **decision.log_fields(),
                         "answer": line.decode("ascii").rstrip("\n")},
                SMTPCBD_FIELDS, (), seconds)
        return line
