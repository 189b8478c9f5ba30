"""The sans-I/O dialogue driven by hand: exact commands out for scripted replies in."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cbv.address import parse_address
from cbv.callout.dialogue import (
    ConnectionLost,
    Dialogue,
    Outcome,
    Quit,
    Send,
    SessionSettings,
    StartTLS,
    lose_connection,
)
from cbv.model import Reason, Stage
from cbv.protocol.smtp import Reply

EHLO_PIPELINING = Reply(250, ("mx.test", "PIPELINING", "STARTTLS"))
EHLO_PLAIN = Reply(250, ("mx.test",))
MAIL_OK = Reply(250, ("Ok",))


def settings(**overrides: object) -> SessionSettings:
    base: dict[str, object] = {"helo_name": "v.test", "senders": ("", "pm@v.test"),
                               "probe_local_part": "probe123"}
    base.update(overrides)
    return SessionSettings(**base)  # type: ignore[arg-type]


def run(dialogue: Dialogue, server: Callable[[bytes], Reply]) -> list[str]:
    """Drive the dialogue with a server function; return every line sent."""
    sent: list[str] = []
    steps = dialogue.steps()
    action = next(steps)
    while not isinstance(action, Quit):
        if isinstance(action, StartTLS):
            action = steps.send([])
            continue
        assert isinstance(action, Send)
        if not action.data:
            action = steps.send([server(b"")])
            continue
        replies: list[Reply] = []
        for line in action.lines():
            sent.append(line.decode().strip())
            if len(replies) < len(action.stages):  # a QUIT that goes last is answered later
                replies.append(server(line))
        action = steps.send(replies)
    return sent


def simple_server(rcpt: dict[str, Reply], ehlo: Reply = EHLO_PLAIN,
                  mail_null: Reply = MAIL_OK) -> Callable[[bytes], Reply]:
    def answer(line: bytes) -> Reply:
        text = line.decode().strip()
        if not text:
            return Reply(220, ("mx.test ESMTP",))
        if text.startswith("EHLO"):
            return ehlo
        if text == "MAIL FROM:<>":
            return mail_null
        if text.startswith("RCPT TO:<"):
            return rcpt.get(text[9:-1], Reply(550, ("5.1.1 unknown",)))
        return Reply(250, ("Ok",))
    return answer


def test_plain_session_sends_one_command_at_a_time() -> None:
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(), [alice])
    sent = run(dialogue, simple_server({"alice@x.test": Reply(250, ("ok",))}))
    assert sent == ["EHLO v.test", "MAIL FROM:<>", "RCPT TO:<probe123@x.test>",
                    "RCPT TO:<alice@x.test>"]
    outcome = dialogue.outcomes[alice]
    assert (outcome.reason, outcome.stage, outcome.catch_all) == (Reason.ACCEPTED, Stage.RCPT,
                                                                 False)


def test_pipelining_batches_the_transaction() -> None:
    batches: list[int] = []
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(starttls=False), [alice])
    steps = dialogue.steps()
    action = next(steps)
    server = simple_server({}, ehlo=EHLO_PIPELINING)
    while not isinstance(action, Quit):
        assert isinstance(action, Send)
        lines = action.lines()
        batches.append(len(lines))
        action = steps.send([server(line) for line in lines[:len(action.stages)]]
                            or [server(b"")])
    assert batches == [0, 1, 4]  # MAIL, the probe's RCPT, alice's RCPT and QUIT
    assert lines[-1] == b"QUIT\r\n" and action.said
    assert dialogue.outcomes[alice].reason is Reason.MAILBOX_UNKNOWN


def test_quit_goes_with_the_last_transaction_only() -> None:
    alice, bob = parse_address("alice@x.test"), parse_address("bob@x.test")
    dialogue = Dialogue(settings(starttls=False, probe_local_part=None), [alice, bob])
    sent = run(dialogue, simple_server({"alice@x.test": Reply(250, ("ok",))},
                                       ehlo=EHLO_PIPELINING))
    assert sent == ["EHLO v.test", "MAIL FROM:<>", "RCPT TO:<alice@x.test>",
                    "RSET", "MAIL FROM:<>", "RCPT TO:<bob@x.test>", "QUIT"]
    assert [dialogue.outcomes[a].reason for a in (alice, bob)] == [Reason.ACCEPTED,
                                                                  Reason.MAILBOX_UNKNOWN]
    assert not dialogue.unfinished


def test_a_probe_sent_alone_is_not_followed_by_quit() -> None:
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(starttls=False, one_recipient_per_transaction=True), [alice])
    sent = run(dialogue, simple_server({"alice@x.test": Reply(250, ("ok",))},
                                       ehlo=EHLO_PIPELINING))
    assert sent[1:] == ["MAIL FROM:<>", "RCPT TO:<probe123@x.test>",
                        "RSET", "MAIL FROM:<>", "RCPT TO:<alice@x.test>", "QUIT"]
    assert dialogue.outcomes[alice].reason is Reason.ACCEPTED


@pytest.mark.parametrize("refused_at", ["MAIL", "RCPT"])
def test_a_sender_refused_behind_a_pipelined_quit_leaves_the_session_unfinished(
    refused_at: str,
) -> None:
    """QUIT is gone: the next sender is for the runner's next session to this host."""
    alice = parse_address("alice@x.test")
    refusal = Reply(550, ("5.7.1 null sender not accepted",))

    def server(line: bytes) -> Reply:
        text = line.decode().strip()
        if text == "MAIL FROM:<>" and refused_at == "MAIL":
            return refusal
        if text.startswith("RCPT") and refused_at == "RCPT":
            return refusal
        return simple_server({}, ehlo=EHLO_PIPELINING)(line)

    dialogue = Dialogue(settings(starttls=False, probe_local_part=None), [alice])
    sent = run(dialogue, server)
    assert sent[1:] == ["MAIL FROM:<>", "RCPT TO:<alice@x.test>", "QUIT"]
    assert dialogue.unfinished and dialogue.sender_index == 1
    assert dialogue.undecided == [alice] and dialogue.host_failure is None


def test_null_sender_refused_without_pipelining_stops_before_rcpt() -> None:
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(), [alice])
    sent = run(dialogue, simple_server({"alice@x.test": Reply(250, ("ok",))},
                                       mail_null=Reply(550, ("5.7.1 no null sender",))))
    assert sent[:3] == ["EHLO v.test", "MAIL FROM:<>", "MAIL FROM:<pm@v.test>"]
    assert dialogue.sender_index == 1
    assert dialogue.outcomes[alice].sender == "pm@v.test"


def test_rcpt_budget_is_never_exceeded() -> None:
    people = [parse_address(f"p{i}@x.test") for i in range(10)]
    dialogue = Dialogue(settings(max_rcpts=4), people)
    sent = run(dialogue, simple_server({}))
    assert sum(line.startswith("RCPT") for line in sent) == 4
    assert len(dialogue.outcomes) == 3 and len(dialogue.undecided) == 7
    assert dialogue.host_failure is None


def test_connection_lost_before_rcpt_asks_for_the_next_host() -> None:
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(), [alice])
    steps = dialogue.steps()
    next(steps)
    steps.send([Reply(220, ("mx.test ready",))])
    assert steps.send([EHLO_PLAIN]) == Send(b"MAIL FROM:<>\r\n", (Stage.MAIL,))
    lose_connection(steps, ConnectionLost(Stage.MAIL, Reason.TIMEOUT, "no reply"))
    assert dialogue.outcomes == {}
    assert dialogue.host_failure == Outcome(Reason.TIMEOUT, Stage.MAIL, detail="no reply")


def test_connection_lost_at_rcpt_decides_the_current_address() -> None:
    alice, bob = parse_address("alice@x.test"), parse_address("bob@x.test")
    dialogue = Dialogue(settings(probe_local_part=None), [alice, bob])
    steps = dialogue.steps()
    next(steps)
    steps.send([Reply(220, ("mx.test ready",))])
    steps.send([EHLO_PLAIN])
    rcpt = steps.send([MAIL_OK])
    assert rcpt == Send(b"RCPT TO:<alice@x.test>\r\n", (Stage.RCPT,))
    lose_connection(steps, ConnectionLost(Stage.RCPT, Reason.CONNECTION_FAILED, "reset"))
    assert dialogue.outcomes[alice].reason is Reason.CONNECTION_FAILED
    assert dialogue.undecided == [bob]
    assert dialogue.host_failure is None  # bob gets a fresh session on the same host


def test_no_connection_at_all_is_a_host_failure() -> None:
    alice = parse_address("alice@x.test")
    dialogue = Dialogue(settings(), [alice])
    dialogue.abandon(ConnectionLost(Stage.CONNECT, Reason.RATE_LIMITED, "host busy"))
    assert dialogue.outcomes == {}
    assert dialogue.host_failure == Outcome(Reason.RATE_LIMITED, Stage.CONNECT,
                                            detail="host busy")


def test_a_lost_connection_ends_the_dialogue() -> None:
    dialogue = Dialogue(settings(), [parse_address("alice@x.test")])
    steps = dialogue.steps()
    next(steps)
    lose_connection(steps, ConnectionLost(Stage.BANNER, Reason.TIMEOUT, "no banner"))
    with pytest.raises(StopIteration):
        steps.send([Reply(220, ("late",))])
