"""Retries the protocol allows (issue 11): a transaction of its own for an address refused
as one recipient too many, the fallback sender when RCPT refuses our sender, VRFY only
where advertised, and the fallback sender named after the message's recipient."""

from __future__ import annotations

import pytest

from cbv.cache.memory import MemoryBackend
from cbv.callout.runner import for_recipient
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, Stage
from cbv.testing import MXScript, Reply
from cbv.testing.mx_script import Rule
from tests.cache.helpers import FakeClock
from tests.world import HELO, World

ALICE = "alice@example.test"
BOB = "bob@example.test"
OK = Reply(250, "2.1.5 Ok")
KNOWN: list[Rule] = [(ALICE, OK), (BOB, OK)]
SENDER_REFUSED = Reply(553, "5.7.1 <{addr}>: Sender address rejected: Access denied")


def transactions(commands: list[str]) -> list[list[str]]:
    """The RCPT arguments of each MAIL transaction, in order."""
    found: list[list[str]] = []
    for command in commands:
        if command.startswith("MAIL"):
            found.append([])
        elif command.startswith("RCPT"):
            found[-1].append(command.removeprefix("RCPT TO:"))
    return found


async def test_one_recipient_too_many_gets_a_transaction_of_its_own(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True,
                                                          max_rcpts_per_transaction=1)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.catch_all) == (Result.PASS,
                                                                   Reason.ACCEPTED, True)
    probe_and_alice, alice_alone = transactions(world.server("127.0.0.2").commands)
    assert len(probe_and_alice) == 2 and probe_and_alice[1] == f"<{ALICE}>"
    assert alice_alone == [f"<{ALICE}>"]


async def test_the_learned_limit_gives_the_probe_its_own_transaction_next_time(
    world: World,
) -> None:
    # Not catch-all: the probe's answer is never remembered as a catch-all fact, so the
    # second callout probes again, alone this time.
    await world.mx("example.test", {"127.0.0.2": MXScript(
        rcpt=KNOWN, rcpt_reply_default=Reply(450, "4.3.0 try again"),
        max_rcpts_per_transaction=1)})
    clock = FakeClock()
    async with Verifier(world.config(), cache=MemoryBackend(clock=clock), clock=clock) as v:
        first = await v.verify(ALICE)
        second = await v.verify(BOB)
    assert first.result is Result.PASS and second.result is Result.PASS
    # ALICE's first session pipelined QUIT behind the probe and her RCPT, so the limit it
    # learned is acted on in a second session; BOB's starts from it.
    assert [[len(t) for t in transactions(session.commands)]
            for session in world.server("127.0.0.2").log] == [[2], [1, 1], [1, 1]]


async def test_a_sender_refused_at_rcpt_is_retried_with_the_fallback_sender(
    world: World,
) -> None:
    script = MXScript(rcpt=KNOWN, sender_refused_at_rcpt=[("", SENDER_REFUSED)])
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.sender) == (Result.PASS, Reason.ACCEPTED,
                                                                f"postmaster@{HELO}")
    mails = [c for c in world.server("127.0.0.2").commands if c.startswith("MAIL")]
    assert mails == ["MAIL FROM:<>", f"MAIL FROM:<postmaster@{HELO}>"]


async def test_every_sender_refused_at_rcpt_is_sender_rejected(world: World) -> None:
    script = MXScript(rcpt=KNOWN, sender_refused_at_rcpt=[("*", SENDER_REFUSED)])
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.UNKNOWN,
                                                               Reason.SENDER_REJECTED, Stage.RCPT)
    assert verdict.evidence == "text:sender-refused"


async def test_an_unfamiliar_reply_code_is_read_by_its_first_digit(world: World) -> None:
    script = MXScript(rcpt_reply_default=Reply(559, "5.9.9 something new"))
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.evidence) == (
        Result.UNKNOWN, Reason.POLICY_REJECTION, "code:559")
    assert world.server("127.0.0.2").commands[-1] == "QUIT"


@pytest.mark.parametrize(("advertised", "setting", "asked"),
                         [(True, True, True), (False, True, False), (False, "always", True),
                          (True, False, False)])
async def test_vrfy_is_asked_where_advertised_or_forced(
    world: World, advertised: bool, setting: bool | str, asked: bool
) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(advertise_vrfy=advertised,
                                                          rcpt=KNOWN)})
    verdict = await world.verify(ALICE, callout={"try_vrfy_first": setting})
    assert verdict.result is Result.PASS
    vrfys = [c for c in world.server("127.0.0.2").commands if c.startswith("VRFY")]
    assert vrfys == ([f"VRFY {ALICE}"] if asked else [])


@pytest.mark.parametrize(("recipient", "fallback"),
                         [("bob@Customer.Test", "postmaster@customer.test"),
                          ("", f"postmaster@{HELO}")])
async def test_the_fallback_sender_takes_the_recipient_domain(
    world: World, recipient: str, fallback: str
) -> None:
    script = MXScript(rcpt=KNOWN, mail=[("", Reply(550, "5.7.1 null sender not accepted"))])
    await world.mx("example.test", {"127.0.0.2": script})
    config = world.config(callout={"fallback_mail_from": "postmaster@{recipient_domain}"})
    async with Verifier(config, cache=MemoryBackend()) as verifier:
        with for_recipient(recipient):
            verdict = await verifier.verify(ALICE)
    assert (verdict.result, verdict.sender) == (Result.PASS, fallback)
