"""The refusal cooldown: what counts as a refusal of the verifier, how long an address
cools, and that a cooling address is never dialled."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from cbv.address import parse_address
from cbv.callout.admission import answered, refusal_of
from cbv.callout.dialogue import Dialogue, Outcome, SessionSettings
from cbv.engine.cooldown import LONGEST_COOLDOWN, LocalCooldown
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, Stage
from cbv.protocol.smtp import Reply as WireReply
from cbv.testing import MXScript, Reply
from tests.cache.helpers import FakeClock
from tests.world import World

ALICE = parse_address("alice@example.test")
BOB = parse_address("bob@example.test")
BLOCKLISTED = Reply(554, "5.7.1 Service unavailable; your IP is on our blocklist")


def wire(code: int, *lines: str) -> WireReply:
    return WireReply(code, lines)


def dialogue(*outcomes: tuple[str, Reason, Stage], probe: bool = False,
             catch_all: bool | None = None, failure: Outcome | None = None) -> Dialogue:
    settings = SessionSettings("verifier.test", ("",), probe_local_part="x" if probe else None)
    session = Dialogue(settings, [ALICE, BOB], catch_all=catch_all)
    for address, reason, stage in outcomes:
        session.outcomes[parse_address(address)] = Outcome(
            reason, stage, wire(550, "5.7.1 blocked"))
    session.host_failure = failure
    return session


@pytest.mark.parametrize(("session", "refused"), [
    (dialogue(("alice@example.test", Reason.VERIFIER_REJECTED, Stage.BANNER)), True),
    (dialogue(("alice@example.test", Reason.CLIENT_BLOCKED, Stage.BANNER)), True),
    (dialogue(failure=Outcome(Reason.TEMPFAIL, Stage.BANNER, wire(421, "too busy"))), True),
    (dialogue(failure=Outcome(Reason.TEMPFAIL, Stage.EHLO, wire(421, "go away"))), True),
    (dialogue(failure=Outcome(Reason.CLIENT_THROTTLED, Stage.MAIL,
                              wire(451, "4.7.1 rate limit exceeded"))), True),
    (dialogue(failure=Outcome(Reason.TEMPFAIL, Stage.BANNER, wire(450, "later"))), False),
    (dialogue(failure=Outcome(Reason.TEMPFAIL, Stage.MAIL, wire(421, "closing"))), False),
    (dialogue(("alice@example.test", Reason.SENDER_REJECTED, Stage.MAIL)), True),
    (dialogue(("alice@example.test", Reason.CLIENT_BLOCKED, Stage.RCPT),
              ("bob@example.test", Reason.ACCEPTED, Stage.RCPT)), True),
    (dialogue(("alice@example.test", Reason.CLIENT_THROTTLED, Stage.RCPT)), True),
    (dialogue(("alice@example.test", Reason.POLICY_REJECTION, Stage.RCPT)), False),
    (dialogue(("alice@example.test", Reason.MAILBOX_UNKNOWN, Stage.RCPT)), False),
    (dialogue(("alice@example.test", Reason.GREYLISTED, Stage.RCPT)), False),
    (dialogue(failure=Outcome(Reason.TIMEOUT, Stage.CONNECT, detail="timed out")), False),
])
def test_what_counts_as_a_refusal_of_the_verifier(session: Dialogue, refused: bool) -> None:
    assert (refusal_of(session) is not None) is refused


def test_a_refusal_is_told_in_the_hosts_words() -> None:
    session = dialogue(failure=Outcome(Reason.TEMPFAIL, Stage.BANNER,
                                       wire(421, "4.7.0 too", "many")))
    assert refusal_of(session) == "banner: 421 4.7.0 too many"
    assert not answered(session)


@pytest.mark.parametrize(("session", "talks"), [
    (dialogue(("alice@example.test", Reason.MAILBOX_UNKNOWN, Stage.RCPT)), True),
    (dialogue(("alice@example.test", Reason.POLICY_REJECTION, Stage.RCPT),
              probe=True, catch_all=False), True),  # the probe got an answer
    (dialogue(("alice@example.test", Reason.POLICY_REJECTION, Stage.RCPT),
              catch_all=False), False),  # known from before, not answered now
])
def test_a_session_that_answers_about_a_mailbox_ends_the_refusals(
    session: Dialogue, talks: bool
) -> None:
    assert answered(session) is talks


async def test_the_cooldown_doubles_on_repeat_up_to_a_day_and_a_success_resets_it() -> None:
    clock = FakeClock()
    cooldown = LocalCooldown(3_600, clock)
    durations = []
    for _ in range(7):
        standing = await cooldown.refused("192.0.2.1", "554 go away")
        assert standing is not None
        durations.append(standing.until - standing.now)
        assert await cooldown.refused("192.0.2.1", "again") is None  # while cooling: no change
        clock.advance(standing.until - standing.now)
    assert durations == [3_600, 7_200, 14_400, 28_800, 57_600, LONGEST_COOLDOWN, LONGEST_COOLDOWN]
    await cooldown.succeeded("192.0.2.1")
    standing = await cooldown.refused("192.0.2.1", "554 go away")
    assert standing is not None and standing.until - standing.now == 3_600
    assert [s.ip for s in await cooldown.cooling()] == ["192.0.2.1"]
    assert await cooldown.purge("192.0.2.1") == 1
    assert await cooldown.cooling() == []


async def test_refusals_are_forgotten_a_day_after_their_cooldown() -> None:
    clock = FakeClock()
    cooldown = LocalCooldown(60, clock)
    await cooldown.refused("192.0.2.1", "554")
    clock.advance(60 + 86_400)
    standing = await cooldown.refused("192.0.2.1", "554")
    assert standing is not None and standing.strikes == 1


async def test_forty_domains_on_a_refusing_mx_cost_it_three_connections(world: World) -> None:
    farm = await world.mx("victim.test", {"127.0.0.2": MXScript(banner=BLOCKLISTED)})
    for n in range(40):  # forged domains naming the victim's MX host
        world.dns.add_mx(f"forged{n}.test", [(10, "mx1.victim.test")])
    config = world.config(limits={"ip_burst": 3, "max_wait": 5.0})
    async with Verifier(config) as verifier:
        verdicts = await asyncio.gather(*(verifier.verify(f"someone@forged{n}.test")
                                          for n in range(40)))
        later = await verifier.verify("someone.else@forged0.test")
    assert 1 <= farm.servers["127.0.0.2"].connections <= 3
    reasons = Counter(v.reason for v in verdicts)
    assert reasons[Reason.CLIENT_BLOCKED] == farm.servers["127.0.0.2"].connections
    assert reasons[Reason.VERIFIER_BLOCKED] >= 1  # waited for the budget, then found it cooling
    assert (later.result, later.reason, later.stage) == (
        Result.UNKNOWN, Reason.VERIFIER_BLOCKED, Stage.CONNECT)
    assert later.detail is not None
    assert "refused this verifier (banner: 554 5.7.1" in later.detail
    assert "no callout to it until" in later.detail
    assert farm.servers["127.0.0.2"].connections <= 3


async def test_a_cooling_mx_is_skipped_for_the_next_one(world: World) -> None:
    farm = await world.mx("example.test", {
        "127.0.0.2": MXScript(banner=BLOCKLISTED), "127.0.0.3": MXScript(catch_all=True)})
    async with Verifier(world.config()) as verifier:
        first = await verifier.verify("alice@example.test")
        second = await verifier.verify("bob@example.test", use_cache=False)
    assert first.reason is Reason.CLIENT_BLOCKED
    assert (second.result, second.ip) == (Result.PASS, "127.0.0.3")
    assert farm.servers["127.0.0.2"].connections == 1


async def test_a_good_session_after_the_cooldown_forgets_the_refusals(world: World) -> None:
    script = MXScript(rcpt_reply_default=Reply(550, "5.7.1 Client host rejected: blocked"))
    farm = await world.mx("example.test", {"127.0.0.2": script})
    clock = FakeClock()
    config = world.config(callout={"detect_catch_all": False})
    async with Verifier(config, clock=clock) as verifier:
        assert (await verifier.verify("a@example.test")).reason is Reason.CLIENT_BLOCKED
        assert (await verifier.verify("b@example.test")).reason is Reason.VERIFIER_BLOCKED
        clock.advance(3_600)
        script.catch_all = True
        script.rcpt_reply_default = Reply(250, "2.1.5 Ok")
        assert (await verifier.verify("c@example.test")).reason is Reason.ACCEPTED
        assert await verifier.cooldown.cooling() == []
        assert (await verifier.cooldown.standing("127.0.0.2")).strikes == 0
    assert farm.servers["127.0.0.2"].connections == 2
