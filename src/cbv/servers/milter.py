"""The milter listener (protocol version 6): Postfix `smtpd_milters`, Sendmail
`INPUT_MAIL_FILTER`. The codec and the protocol's rules are `cbv.protocol.milter`'s; this
is the asyncio side and what cbv does at each step (docs/milter.md).

The sender is verified once a transaction's MAIL comes (phase "mailfrom"), and answered
there when one policy holds for every recipient; with per recipient domain tables, or
phase "rcptto", or call forward, each RCPT is answered under its recipient's rules (the
callout started at MAIL is shared). What only a milter can do waits for the end of the
message: the X-CBV-Result and X-CBV-Score headers, the subject tag and quarantine.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass, field

from cbv.config import PolicyConfig
from cbv.policy import Action, Decision, RequestContext, RequestKind
from cbv.policy.rules import merge_rules
from cbv.protocol.milter import (
    SMFIF,
    SMFIM,
    Abort,
    AddHeader,
    ChangeHeader,
    Command,
    CommandDecoder,
    Connect,
    Continue,
    EndOfMessage,
    FilterNeeds,
    FilterSession,
    Header,
    Mail,
    MilterEncodingError,
    MilterProtocolError,
    OptionNegotiation,
    Quarantine,
    QuitNewConnection,
    Rcpt,
    Reject,
    ReplyCode,
    Response,
    Step,
    Tempfail,
    encode_response,
)
from cbv.servers.connection import ConnectionTracker, RequestConnection
from cbv.servers.logs import DECISIONS, OwnFields, event
from cbv.servers.runtime import Answered, Generation, Runtime, Verifying
from cbv.text import ascii_line

LOG = logging.getLogger("cbv.milter")
MILTER_FIELDS = OwnFields("queue_id", "recipient", "client")
SCORE_HEADER = "X-CBV-Score"
SUBJECT = "subject"
# Macros cbv reads; asked for where the MTA lets a filter choose (SMFIF_SETSYMLIST). The
# queue id `i` at every stage after MAIL too: Postfix has none yet at MAIL, and cbv's log
# lines are matched with the MTA's by it (`milter-hold`, `postcat -q`, Sendmail's qf files).
MACROS = {SMFIM.CONNECT: "{client_addr}", SMFIM.ENVFROM: "i {auth_authen}",
          SMFIM.ENVRCPT: "i", SMFIM.EOM: "i"}
_connection_ids = itertools.count(1)


@dataclass(frozen=True, slots=True)
class ProtocolBreak:
    """The MTA's bytes could not be decoded: what was decoded before is answered, then the
    connection is closed."""

    reason: str


MilterEvent = Command | ProtocolBreak


def milter_needs(policy: PolicyConfig) -> FilterNeeds:
    """Only what the site policy can use: RCPT only when some answer depends on the
    recipient, headers only for a subject tag, each action only if some rule takes it."""
    every = [merge_rules(policy), *(merge_rules(policy, t) for t in policy.domains.values())]
    accepts_failed = [rules for rules in every if rules.on_fail == "accept"]
    tags = any(rules.tag_subject for rules in accepts_failed)
    needs = FilterNeeds.for_verification(
        at_recipient=(policy.phase == "rcptto" or bool(policy.domains)
                      or any(rules.verify == "recipient" for rules in every)),
        add_headers=tags or any(rules.add_header for rules in every)
        or any(rules.score > 0 for rules in accepts_failed),
        change_headers=tags,
        quarantine=any(rules.on_fail == "quarantine" for rules in every),
    )
    return FilterNeeds(needs.decide, needs.observe, needs.actions, macros=MACROS)


def unbracket(address: str) -> str:
    """`<a@b>` as the MTA passes it, to `a@b`; `<>` to the null sender."""
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        return text[1:-1]
    return text


def reply_of(decision: Decision) -> Response:
    """The answer at MAIL or RCPT. Quarantine and the accept-side marks wait for the end
    of the message; a dry run changes nothing."""
    if decision.dry_run or decision.action not in (Action.REJECT, Action.DEFER):
        return Continue()
    if decision.code is None:
        return Reject() if decision.action is Action.REJECT else Tempfail()
    return ReplyCode(decision.code, decision.enhanced, ascii_line(decision.text))


def described(response: Response, decision: Decision) -> str:
    """The `answer` of the decision's log line."""
    if isinstance(response, ReplyCode):
        return response.line
    if isinstance(response, Reject | Tempfail):
        return type(response).__name__.lower()
    if decision.action is Action.QUARANTINE and not decision.dry_run:
        return "quarantine at end of message"
    return "continue"


@dataclass(slots=True)
class Transaction:
    """One message: from MAIL to the end of the message, ABORT, or the next MAIL."""

    message_id: str
    sender: str = ""
    marks: list[Decision] = field(default_factory=list)  # applied at end of message
    subject: str | None = None  # the first Subject header, when headers are seen


def message_changes(marks: list[Decision], subject: str | None, headers_seen: bool = True
                    ) -> list[Response]:
    """The end-of-message actions of the decisions made for one message, each once:
    identical headers once, one score (the highest), each tag once in the subject (only
    when the headers were seen: otherwise where the Subject is is not known)."""
    headers: dict[tuple[str, str], None] = {}
    tags: dict[str, None] = {}
    score = 0.0
    quarantine = ""
    for decision in marks:
        if decision.action is Action.QUARANTINE:
            quarantine = quarantine or ascii_line(decision.text) or "cbv"
            continue
        headers.update(dict.fromkeys(decision.headers))
        score = max(score, decision.score)
        if decision.subject_tag:
            tags[decision.subject_tag] = None
    changes: list[Response] = [AddHeader(name, value) for name, value in headers]
    if score:
        changes.append(AddHeader(SCORE_HEADER, f"{score:g}"))
    current = (subject or "").replace("\r", "")
    new_tags = [tag for tag in tags if tag not in current]
    if new_tags and headers_seen:
        if subject is None:
            changes.append(AddHeader("Subject", " ".join(new_tags)))
        else:
            changes.append(ChangeHeader(1, "Subject", " ".join([*new_tags, current.lstrip()])))
    if quarantine:
        changes.append(Quarantine(quarantine))
    return changes


class MilterCommands:
    """The MTA's commands, decoded as the connection takes them; a stream that breaks the
    protocol (or ends inside a packet) is one ProtocolBreak, then nothing more."""

    def __init__(self, max_data: int) -> None:
        # The length field counts the command byte as well as the data.
        self._decoder = CommandDecoder(max_packet=max_data + 1)
        self._broken = False
        self._ended = False

    def receive(self, data: bytes) -> None:
        if not self._broken:
            self._decoder.receive(data)

    def next_event(self) -> MilterEvent | None:
        if self._broken:
            return None
        try:
            command = self._decoder.next_event()
        except MilterProtocolError as exc:
            self._broken = True
            return ProtocolBreak(str(exc))
        if command is None and self._ended and self._decoder.pending:
            self._broken = True
            return ProtocolBreak(f"connection closed inside a packet "
                                 f"({self._decoder.pending} bytes)")
        return command

    def end_of_input_reached(self) -> None:
        self._ended = True

    def stop(self) -> None:
        """Take nothing more from this connection."""
        self._broken = True


class MilterConnection(RequestConnection[MilterEvent]):
    """One MTA connection: many SMTP sessions (QUIT_NC) and transactions (ABORT) on it."""

    listener = "milter"

    def __init__(self, runtime: Runtime, tracker: ConnectionTracker) -> None:
        config = runtime.generation.config
        self._commands = MilterCommands(config.server.milter_max_packet)
        super().__init__(runtime, tracker, self._commands)
        needs = milter_needs(config.policy)
        self._at_recipient = Step.RCPT in needs.decide
        self._sees_headers = Step.HEADER in needs.observe
        self._session = FilterSession(needs)
        self._id = next(_connection_ids)
        self._messages = itertools.count(1)
        self._client = ""
        self._transaction = self._new_transaction()
        self._prefetching: set[asyncio.Task[Answered]] = set()

    def receive_end(self) -> None:
        self._commands.end_of_input_reached()

    async def answer(self, request: MilterEvent) -> bytes:
        if isinstance(request, ProtocolBreak):
            return self._give_up(request.reason)
        started = time.perf_counter()
        try:
            waits = self._session.receive(request)
        except MilterProtocolError as exc:  # out of order, or a negotiation cbv cannot use
            return self._give_up(str(exc))
        if isinstance(request, OptionNegotiation):
            negotiated = self._session.negotiated
            assert negotiated is not None, "set by receiving the offer"
            return self._session.answer(negotiated.reply)
        if isinstance(request, Connect):
            self._client = request.address
        elif isinstance(request, Mail):
            return await self._mail(request, waits, started)
        elif isinstance(request, Rcpt):
            if self._at_recipient and waits:
                return await self._rcpt(request, started)
        elif isinstance(request, Header):
            if self._transaction.subject is None and request.name.lower() == SUBJECT:
                self._transaction.subject = request.value
        elif isinstance(request, EndOfMessage):
            return self._end_of_message()
        elif isinstance(request, Abort | QuitNewConnection):
            self._transaction = self._new_transaction()
            if isinstance(request, QuitNewConnection):
                self._client = ""
        return self._session.answer(Continue()) if waits else b""

    def _give_up(self, reason: str) -> bytes:
        event(LOG, logging.WARNING, "milter protocol error, connection closed", reason=reason)
        self._runtime.telemetry.failed("milter", "protocol_error")
        self._commands.stop()
        self.drop_pending()
        self.close_when_idle()
        return b""

    def _new_transaction(self) -> Transaction:
        return Transaction(f"milter-{self._id}-{next(self._messages)}")

    def _context(self, kind: RequestKind, recipient: str = "") -> RequestContext:
        macro = self._session.macro
        return RequestContext(kind, self._transaction.sender, recipient,
                              self._client or macro("{client_addr}") or "",
                              macro("{auth_authen}") or "")

    async def _mail(self, command: Mail, waits: bool, started: float) -> bytes:
        self._transaction = self._new_transaction()
        self._transaction.sender = unbracket(command.sender)
        context = self._context(RequestKind.MAIL)
        if not self._at_recipient and waits:
            return await self._decide(context, started)
        self._start_early(context)
        return self._session.answer(Continue()) if waits else b""

    async def _rcpt(self, command: Rcpt, started: float) -> bytes:
        return await self._decide(self._context(RequestKind.RCPT, unbracket(command.recipient)),
                                  started)

    def _start_early(self, context: RequestContext) -> None:
        """Start the sender's callout at MAIL; the RCPTs of this message share it."""
        generation = self._runtime.generation
        begun = generation.begin(context, self._transaction.message_id)
        if isinstance(begun, Verifying) and begun.runs_it:
            task = asyncio.get_running_loop().create_task(self._finish_alone(generation, begun))
            self._prefetching.add(task)
            task.add_done_callback(self._prefetching.discard)

    @staticmethod
    async def _finish_alone(generation: Generation, begun: Verifying) -> Answered:
        with generation:
            return await generation.finish(begun)

    async def _decide(self, context: RequestContext, started: float) -> bytes:
        transaction = self._transaction
        shared = transaction.message_id if self._at_recipient else ""  # RCPTs share a callout
        return await self.decided(
            context,
            lambda answered, _: self._respond(answered, context, transaction, started),
            shared,
        )

    def _respond(self, answered: Answered, context: RequestContext, transaction: Transaction,
                 started: float) -> bytes:
        decision = answered.decision
        seconds = time.perf_counter() - started
        if decision is None:  # not a request cbv acts on (phase rcptto, at MAIL)
            self._runtime.telemetry.answered("milter", None, seconds)
            return self._session.answer(Continue())
        response = reply_of(decision)
        try:
            answer = self._session.answer(response)
        except MilterEncodingError:  # a text too long for the MTA: the code alone
            assert isinstance(response, ReplyCode), "only reply texts can be refused"
            response = ReplyCode(response.reply_code, response.enhanced, "")
            answer = self._session.answer(response)
        if (not decision.dry_run and decision.action in (Action.ACCEPT, Action.QUARANTINE)
                and transaction is self._transaction):
            transaction.marks.append(decision)
        self._runtime.telemetry.answered("milter", decision, seconds)
        if DECISIONS.wanted():
            DECISIONS.write(
                None,
                lambda: {"listener": "milter", **decision.log_fields(),
                         "answer": described(response, decision)},
                MILTER_FIELDS,
                (self._session.macro("i") or "", context.recipient, context.client_address),
                seconds)
        return answer

    def _end_of_message(self) -> bytes:
        transaction, self._transaction = self._transaction, self._new_transaction()
        negotiated = self._session.negotiated
        assert negotiated is not None, "nothing comes before the negotiation"
        changes: list[Response] = []
        if not self._sees_headers and any(mark.subject_tag for mark in transaction.marks):
            event(LOG, logging.WARNING, "subject tag not applied: headers not negotiated on "
                  "this connection")
        for change in message_changes(transaction.marks, transaction.subject,
                                      self._sees_headers):
            action = ACTIONS[type(change)]
            try:
                encode_response(change)
            except MilterEncodingError as exc:
                event(LOG, logging.WARNING, "message change not sent", change=type(change).__name__,
                      reason=str(exc))
                continue
            if not negotiated.allows(action):  # the policy changed since this connection began
                event(LOG, logging.WARNING, "message change not negotiated on this connection",
                      change=type(change).__name__)
                continue
            changes.append(change)
            if isinstance(change, Quarantine):
                event(LOG, logging.INFO, "quarantined", queue_id=self._session.macro("i") or "",
                      sender=transaction.sender, reason=change.reason)
        return self._session.answer(*changes, Continue())


ACTIONS: dict[type[Response], SMFIF] = {
    AddHeader: SMFIF.ADDHDRS,
    ChangeHeader: SMFIF.CHGHDRS,
    Quarantine: SMFIF.QUARANTINE,
}
