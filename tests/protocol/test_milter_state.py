"""The milter session's order rules, exhaustively: every (state, event) pair, driven
through a real FilterSession, either moves to the state the table names or is refused,
with the fault on the right side, leaving the session as it was."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from cbv.protocol.milter import (
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIP,
    Abort,
    Connect,
    Continue,
    DefineMacro,
    EndOfMessage,
    FilterNeeds,
    FilterSession,
    MilterProtocolError,
    MilterUsageError,
    OptionNegotiation,
    Quit,
    QuitNewConnection,
    SessionEvent,
    SessionState,
)
from cbv.protocol.milter_state import TRANSITIONS

POSTFIX_OFFER = OptionNegotiation(6, SMFIF(0x1FF), SMFIP(0x1FFFFF))
SENDER_AT_MAIL = FilterNeeds.for_verification(at_recipient=False)


def in_state(state: SessionState) -> FilterSession:
    """A session brought to `state` by the commands and answers that lead there."""
    session = FilterSession(SENDER_AT_MAIL)
    if state is SessionState.START:
        return session
    session.receive(POSTFIX_OFFER)
    if state is SessionState.OFFERED:
        return session
    assert session.negotiated is not None
    session.answer(session.negotiated.reply)
    if state is SessionState.ASKED:
        session.receive(EndOfMessage())
    elif state is SessionState.CLOSED:
        session.receive(Quit())
    assert session.state is state
    return session


def answer(session: FilterSession) -> None:
    negotiated = session.negotiated
    if session.state is SessionState.OFFERED and negotiated is not None:
        session.answer(negotiated.reply)
    else:
        session.answer(Continue())


EVENTS: dict[SessionEvent, Callable[[FilterSession], object]] = {
    SessionEvent.OFFER: lambda session: session.receive(POSTFIX_OFFER),
    SessionEvent.MACROS: lambda session: session.receive(DefineMacro(SMFIC.MAIL, (("i", "Q"),))),
    SessionEvent.ABORT: lambda session: session.receive(Abort()),
    SessionEvent.QUIT: lambda session: session.receive(Quit()),
    SessionEvent.QUIT_NEW_CONNECTION: lambda session: session.receive(QuitNewConnection()),
    SessionEvent.ASK: lambda session: session.receive(EndOfMessage()),
    # Postfix's offer lets cbv ask for no reply to CONNECT, which it does not decide on.
    SessionEvent.TELL: lambda session: session.receive(Connect("c", SMFIA.UNKNOWN)),
    SessionEvent.ANSWER: answer,
}


def refused_with(state: SessionState, event: SessionEvent) -> type[Exception]:
    if event is SessionEvent.ANSWER or state in (SessionState.OFFERED, SessionState.ASKED):
        return MilterUsageError  # the filter answered unasked, or received before answering
    return MilterProtocolError  # the MTA sent a command out of order


@pytest.mark.parametrize(("state", "event"), list(itertools.product(SessionState, SessionEvent)))
def test_every_state_and_event(state: SessionState, event: SessionEvent) -> None:
    session = in_state(state)
    awaiting = session.awaiting
    if (state, event) in TRANSITIONS:
        waits = EVENTS[event](session)
        assert session.state is TRANSITIONS[state, event]
        if event is not SessionEvent.ANSWER:
            assert waits is (session.state in (SessionState.OFFERED, SessionState.ASKED))
        assert (session.awaiting is not None) is (session.state in (
            SessionState.OFFERED, SessionState.ASKED))
    else:
        with pytest.raises(refused_with(state, event)) as refused:
            EVENTS[event](session)
        assert "\n" not in str(refused.value)
        assert session.state is state
        assert session.awaiting is awaiting


def test_the_legal_sequences() -> None:
    """Negotiation first and answered; then commands, each asked one answered before the
    next; QUIT last. QUIT_NC starts a new SMTP session on the same connection."""
    reachable = {SessionState.START}
    for _ in SessionState:
        reachable |= {after for (before, _), after in TRANSITIONS.items() if before in reachable}
    assert reachable == set(SessionState)
    leaving = {before for before, _ in TRANSITIONS}
    assert set(SessionState) - leaving == {SessionState.CLOSED}
