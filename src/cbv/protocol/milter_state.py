"""The order rules of one milter connection, in one table (in the manner of h11's `_state`).

The MTA opens with the option negotiation and waits for its answer; after that it sends
macros, ABORT, QUIT_NC and the steps negotiated as no-reply without waiting, and waits for
an answer to every other command before it sends the next; QUIT ends the connection. Every
(state, event) pair missing from `TRANSITIONS` is refused: a command out of order is the
MTA's fault (MilterProtocolError), an answer nobody waits for or a command received before
the last one was answered is the filter's (MilterUsageError).
"""

from __future__ import annotations

from enum import Enum

from cbv.protocol.milter_wire import MilterProtocolError


class MilterUsageError(Exception):
    """The filter side tried to break the protocol (an answer nobody asked for, an
    action it did not negotiate); nothing was encoded."""


class SessionState(Enum):
    START = "start"  # nothing yet: only the option negotiation may come
    OFFERED = "offered"  # the MTA waits for the answer to its option negotiation
    READY = "ready"  # between commands
    ASKED = "asked"  # the MTA waits for the answer to a command
    CLOSED = "closed"  # QUIT came: the MTA sends nothing more


class SessionEvent(Enum):
    OFFER = "option negotiation"
    MACROS = "macros"
    ABORT = "abort"
    QUIT = "quit"
    QUIT_NEW_CONNECTION = "quit, new connection"
    ASK = "a command the MTA waits on"
    TELL = "a step negotiated as no-reply"
    ANSWER = "the filter's answer"


S, E = SessionState, SessionEvent
TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (S.START, E.OFFER): S.OFFERED,
    (S.OFFERED, E.ANSWER): S.READY,
    (S.READY, E.MACROS): S.READY,
    (S.READY, E.ABORT): S.READY,
    (S.READY, E.TELL): S.READY,
    (S.READY, E.QUIT_NEW_CONNECTION): S.READY,  # a new SMTP session on the same connection
    (S.READY, E.ASK): S.ASKED,
    (S.ASKED, E.ANSWER): S.READY,
    (S.READY, E.QUIT): S.CLOSED,
}
"""Every legal move; anything else raises what `refusal` says."""


def next_state(state: SessionState, event: SessionEvent, command: str, awaited: str
               ) -> SessionState:
    """The state after `event`; `command` names the command received (unused for an
    answer), `awaited` the one still unanswered, for the error's text."""
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise refusal(state, event, command, awaited) from None


def refusal(state: SessionState, event: SessionEvent, command: str, awaited: str
            ) -> MilterProtocolError | MilterUsageError:
    """Why `event` cannot happen in `state`, naming whose fault it is."""
    if event is SessionEvent.ANSWER:
        return MilterUsageError(
            "no milter command awaits an answer; the MTA would take it for the next one"
        )
    if state in (SessionState.OFFERED, SessionState.ASKED):
        return MilterUsageError(f"{awaited} is still unanswered")
    if state is SessionState.CLOSED:
        return MilterProtocolError(f"milter {command} after QUIT")
    if state is SessionState.START:
        return MilterProtocolError(f"milter {command} before option negotiation")
    return MilterProtocolError("second milter option negotiation on one connection")
