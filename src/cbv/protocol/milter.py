"""Sendmail milter protocol, version 6, sans I/O: the codec and one connection's state.

Bytes from the MTA go through `CommandDecoder` into commands; `FilterSession.receive()`
says whether the MTA now waits for an answer (it does not for macros, ABORT, QUIT, or
steps negotiated as SMFIP_NR_*), and `FilterSession.answer()` encodes one, refusing any
answer the MTA did not ask for: an unasked answer would be read as the answer to the
MTA's next command. The order rules are the table in `milter_state`; the wire details live
in `milter_wire`, `milter_commands`, `milter_responses` and `milter_negotiation`; this
module is the one to import.
"""

from __future__ import annotations

from cbv.protocol.milter_commands import (
    Abort,
    Body,
    Command,
    CommandDecoder,
    Connect,
    Data,
    DefineMacro,
    EndOfHeaders,
    EndOfMessage,
    Header,
    Helo,
    Mail,
    OptionNegotiation,
    Quit,
    QuitNewConnection,
    Rcpt,
    UnknownCommand,
    UnknownSmtpCommand,
    decode_command,
    encode_command,
)
from cbv.protocol.milter_negotiation import (
    FilterNeeds,
    Negotiated,
    NegotiationError,
    Step,
    negotiate,
)
from cbv.protocol.milter_responses import (
    FINAL_RESPONSES,
    MAX_REPLY_LENGTH,
    Accept,
    AddHeader,
    ChangeHeader,
    Continue,
    Discard,
    InsertHeader,
    NegotiationReply,
    OtherResponse,
    Progress,
    Quarantine,
    Reject,
    ReplyCode,
    Response,
    ResponseDecoder,
    Skip,
    Tempfail,
    decode_response,
    encode_response,
)
from cbv.protocol.milter_state import (
    MilterUsageError,
    SessionEvent,
    SessionState,
    next_state,
)
from cbv.protocol.milter_wire import (
    DEFAULT_MAX_PACKET,
    SMFI_CURR_ACTS,
    SMFI_CURR_PROT,
    SMFI_PROT_VERSION,
    SMFI_PROT_VERSION_MIN,
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIM,
    SMFIP,
    SMFIR,
    MilterDecoder,
    MilterEncodingError,
    MilterProtocolError,
    Packet,
    encode_packet,
)

__all__ = [
    "DEFAULT_MAX_PACKET",
    "MAX_REPLY_LENGTH",
    "SMFIA",
    "SMFIC",
    "SMFIF",
    "SMFIM",
    "SMFIP",
    "SMFIR",
    "SMFI_CURR_ACTS",
    "SMFI_CURR_PROT",
    "SMFI_PROT_VERSION",
    "Abort",
    "Accept",
    "AddHeader",
    "Body",
    "ChangeHeader",
    "Command",
    "CommandDecoder",
    "Connect",
    "Continue",
    "Data",
    "DefineMacro",
    "Discard",
    "EndOfHeaders",
    "EndOfMessage",
    "FilterNeeds",
    "FilterSession",
    "Header",
    "Helo",
    "InsertHeader",
    "Mail",
    "MilterDecoder",
    "MilterEncodingError",
    "MilterProtocolError",
    "MilterUsageError",
    "Negotiated",
    "NegotiationError",
    "NegotiationReply",
    "OptionNegotiation",
    "OtherResponse",
    "Packet",
    "Progress",
    "Quarantine",
    "Quit",
    "QuitNewConnection",
    "Rcpt",
    "Reject",
    "ReplyCode",
    "Response",
    "ResponseDecoder",
    "SessionEvent",
    "SessionState",
    "Skip",
    "Step",
    "Tempfail",
    "UnknownCommand",
    "UnknownSmtpCommand",
    "decode_command",
    "decode_response",
    "encode_command",
    "encode_packet",
    "encode_response",
    "negotiate",
]


_EVENT_OF: dict[type[Command], SessionEvent] = {
    OptionNegotiation: SessionEvent.OFFER,
    DefineMacro: SessionEvent.MACROS,
    Abort: SessionEvent.ABORT,
    Quit: SessionEvent.QUIT,
    QuitNewConnection: SessionEvent.QUIT_NEW_CONNECTION,
}
_STEP_OF: dict[type[Command], Step] = {
    Connect: Step.CONNECT,
    Helo: Step.HELO,
    Mail: Step.MAIL,
    Rcpt: Step.RCPT,
    Data: Step.DATA,
    UnknownSmtpCommand: Step.UNKNOWN,
    Header: Step.HEADER,
    EndOfHeaders: Step.EOH,
    Body: Step.BODY,
}

# libmilter keeps one macro set per stage, in this order, and searches them in it.
_MACRO_STAGES = (
    SMFIC.CONNECT,
    SMFIC.HELO,
    SMFIC.MAIL,
    SMFIC.RCPT,
    SMFIC.DATA,
    SMFIC.BODYEOB,
    SMFIC.EOH,
)
# A new CONNECT, HELO, MAIL or RCPT makes the macros of the stages after it stale.
_CLEARS_AFTER: dict[type[Command], int] = {
    Connect: _MACRO_STAGES.index(SMFIC.CONNECT),
    Helo: _MACRO_STAGES.index(SMFIC.HELO),
    Mail: _MACRO_STAGES.index(SMFIC.MAIL),
    Rcpt: _MACRO_STAGES.index(SMFIC.RCPT),
}

_ACTION_FOR_CHANGE: dict[type[Response], SMFIF] = {
    AddHeader: SMFIF.ADDHDRS,
    InsertHeader: SMFIF.ADDHDRS,
    ChangeHeader: SMFIF.CHGHDRS,
    Quarantine: SMFIF.QUARANTINE,
}


class FilterSession:
    """The filter's side of one milter connection, fed the MTA's commands in order.

    The server handles each command before the next: `receive()` it, and when that
    returns True, `answer()` it before receiving another. `state` moves as
    `milter_state.TRANSITIONS` says; a refused command or answer changes nothing.
    """

    def __init__(self, needs: FilterNeeds) -> None:
        self._needs = needs
        self._state = SessionState.START
        self._negotiated: Negotiated | None = None
        self._awaiting: Command | None = None
        self._macros: list[dict[str, str]] = [{} for _ in _MACRO_STAGES]

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def negotiated(self) -> Negotiated | None:
        """The agreement, once the MTA's offer is in; its `reply` answers the offer."""
        return self._negotiated

    @property
    def awaiting(self) -> Command | None:
        """The command the MTA waits to have answered, if any."""
        return self._awaiting

    @property
    def closed(self) -> bool:
        """QUIT came: the MTA will send nothing more."""
        return self._state is SessionState.CLOSED

    def receive(self, command: Command) -> bool:
        """Track one command; True when the MTA now waits for an answer to it.

        Raises MilterProtocolError when the MTA breaks the order (nothing before the
        negotiation, nothing after QUIT), NegotiationError when it cannot give what the
        filter needs.
        """
        event = self._event_of(command)
        state = self._advance(event, type(command).__name__)
        if isinstance(command, OptionNegotiation):
            self._negotiated = negotiate(self._needs, command)
        elif isinstance(command, DefineMacro):
            self._define(command)
        elif isinstance(command, Quit | QuitNewConnection):
            self._clear_macros(after=-1)
        elif type(command) in _CLEARS_AFTER:
            self._clear_macros(after=_CLEARS_AFTER[type(command)])
        self._state = state
        if state in (SessionState.OFFERED, SessionState.ASKED):
            self._awaiting = command
            return True
        return False

    def answer(self, *responses: Response) -> bytes:
        """Encode the answer to the awaited command: any Progress or (at end of message)
        negotiated message changes, then one final response. The negotiation is answered
        with a NegotiationReply, normally `negotiated.reply`."""
        state = self._advance(SessionEvent.ANSWER, "")
        command = self._awaiting
        assert command is not None, "set whenever an answer is awaited"
        if isinstance(command, OptionNegotiation):
            self._check_negotiation_answer(command, responses)
        elif self._negotiated is not None:
            _check_answer(self._negotiated, command, responses)
        encoded = b"".join(encode_response(response) for response in responses)
        self._state = state
        self._awaiting = None
        return encoded

    def _event_of(self, command: Command) -> SessionEvent:
        event = _EVENT_OF.get(type(command))
        if event is not None:
            return event
        step = _STEP_OF.get(type(command))
        if step is not None and self._negotiated is not None \
                and not self._negotiated.expects_reply(step):
            return SessionEvent.TELL
        # End of message, an unknown command byte, and every step not negotiated away.
        return SessionEvent.ASK

    def _advance(self, event: SessionEvent, command: str) -> SessionState:
        """The state `event` leads to; raises, changing nothing, when it is out of order."""
        awaited = type(self._awaiting).__name__
        return next_state(self._state, event, command, awaited)

    def macro(self, name: str) -> str | None:
        """A macro's current value, as libmilter's smfi_getsymval finds it: the earliest
        stage first, and `i` and `{i}` are one macro (single letters only)."""
        names = {name}
        if len(name) == 1:
            names.add(f"{{{name}}}")
        elif len(name) == 3 and name[0] == "{" and name[2] == "}":
            names.add(name[1])
        for stage in self._macros:
            for candidate in names:
                if candidate in stage:
                    return stage[candidate]
        return None

    def _define(self, command: DefineMacro) -> None:
        if command.for_command in _MACRO_STAGES:
            self._macros[_MACRO_STAGES.index(SMFIC(command.for_command))] = dict(command.macros)

    def _clear_macros(self, after: int) -> None:
        for index in range(after + 1, len(self._macros)):
            self._macros[index] = {}

    def _check_negotiation_answer(
        self, offer: OptionNegotiation, responses: tuple[Response, ...]
    ) -> None:
        if len(responses) != 1 or not isinstance(responses[0], NegotiationReply):
            raise MilterUsageError("option negotiation is answered by one NegotiationReply")
        reply = responses[0]
        if not SMFI_PROT_VERSION_MIN <= reply.version <= offer.version:
            raise MilterUsageError(f"version {reply.version} against the MTA's {offer.version}")
        # Plain ints: `~` on an IntFlag drops the bits it has no name for.
        extra_actions = int(reply.actions) & ~int(offer.actions)
        extra_protocol = int(reply.protocol) & ~int(offer.protocol)
        if extra_actions or extra_protocol:
            raise MilterUsageError(
                f"asks for what the MTA did not offer: actions 0x{extra_actions:x}, "
                f"protocol 0x{extra_protocol:x}"
            )
        self._negotiated = Negotiated(offer, reply)


def _check_answer(
    negotiated: Negotiated, command: Command, responses: tuple[Response, ...]
) -> None:
    if not responses or not isinstance(responses[-1], FINAL_RESPONSES):
        raise MilterUsageError("an answer ends with one final response")
    for response in responses[:-1]:
        if isinstance(response, Progress):
            continue
        if type(response) not in _ACTION_FOR_CHANGE:
            raise MilterUsageError(f"{type(response).__name__} can only end an answer")
        if not isinstance(command, EndOfMessage):
            raise MilterUsageError(f"{type(response).__name__} only at end of message")
        if not negotiated.allows(_ACTION_FOR_CHANGE[type(response)]):
            raise MilterUsageError(f"{type(response).__name__} was not negotiated")
    final = responses[-1]
    if isinstance(final, Discard) and isinstance(command, Connect | Helo):
        raise MilterUsageError("DISCARD is not allowed at CONNECT or HELO")
    if isinstance(final, Skip) and SMFIP.SKIP not in negotiated.reply.protocol:
        raise MilterUsageError("SKIP was not negotiated")
