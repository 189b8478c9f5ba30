"""The Verifier with its cache: lifetimes by result, refresh-ahead, and domain facts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from cbv.address import parse_address
from cbv.cache.memory import MemoryBackend
from cbv.cache.records import CachedVerdict
from cbv.callout.runner import for_recipient
from cbv.engine.observer import NoObserver
from cbv.engine.polling import poll_until
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, Stage
from cbv.testing import MXScript, Reply, ScriptedMX
from tests.cache.helpers import FakeClock
from tests.waiting import WITHIN, until
from tests.world import World

ALICE = "alice@example.test"
BOB = "bob@example.test"
OK = Reply(250, "2.1.5 Ok")
TEMPFAIL = Reply(451, "4.3.0 <{addr}>: Temporary lookup failure")
UNKNOWN = Reply(550, "5.1.1 <{addr}>: User unknown")
KNOWN = [("alice@example.test", OK), ("bob@example.test", OK)]


class Setup:
    def __init__(self, world: World, clock: FakeClock, cache: MemoryBackend) -> None:
        self.world = world
        self.clock = clock
        self.cache = cache

    async def verifier(self, script: MXScript, **sections: dict[str, Any]) -> Verifier:
        await self.world.mx("example.test", {"127.0.0.2": script})
        return Verifier(self.world.config(**sections), cache=self.cache, clock=self.clock)

    @property
    def mx(self) -> ScriptedMX:
        return self.world.server("127.0.0.2")


@pytest_asyncio.fixture
async def setup(world: World) -> AsyncIterator[Setup]:
    clock = FakeClock()
    yield Setup(world, clock, MemoryBackend(clock=clock))


async def wait_for_connections(mx: ScriptedMX, count: int) -> None:
    """The background refresh has dialled the MX `count` times and hung up."""
    await until(lambda: mx.connections >= count, f"{count} connections to the MX")
    assert mx.connections == count
    async with asyncio.timeout(5):
        await mx.wait_idle()


async def wait_for_stored(cache: MemoryBackend, address: str,
                          done: Callable[[CachedVerdict | None], bool], what: str) -> None:
    """The background refresh has stored its verdict (dialling is not yet storing)."""
    record = await poll_until(lambda: cache.get(parse_address(address)), done, WITHIN)
    assert done(record), f"not within {WITHIN:g} s: {what}"


async def test_a_repeat_is_answered_from_the_cache_with_its_original_provenance(
    setup: Setup,
) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        fresh = await verifier.verify(ALICE)
        again = await verifier.verify(ALICE)
    assert (fresh.result, fresh.cached, again.cached) == (Result.PASS, False, True)
    assert fresh.expires_at is not None and fresh.expires_at == again.expires_at
    same = ("checked_at", "mx", "ip", "port", "stage", "reply", "sender", "duration_ms")
    assert all(getattr(fresh, name) == getattr(again, name) for name in same)
    assert setup.mx.connections == 1
    assert setup.mx.rcpts.count(ALICE) == 1


@pytest.mark.parametrize(
    ("script", "reason", "lifetime"),
    [
        (MXScript(rcpt_reply_default=UNKNOWN), Reason.MAILBOX_UNKNOWN, 3 * 3_600),
        (MXScript(rcpt_reply_default=TEMPFAIL), Reason.TEMPFAIL, 300),
        (MXScript(rcpt_reply_default=Reply(550, "5.7.1 go away")), Reason.POLICY_REJECTION,
         3_600),
    ],
    ids=["fail-3h", "transient-5min", "unknown-1h"],
)
async def test_each_result_is_kept_for_its_lifetime(
    setup: Setup, script: MXScript, reason: Reason, lifetime: int
) -> None:
    async with await setup.verifier(script) as verifier:
        assert (await verifier.verify(ALICE)).reason is reason
        setup.clock.advance(lifetime - 1)
        assert (await verifier.verify(ALICE)).cached
        setup.clock.advance(1)
        assert not (await verifier.verify(ALICE)).cached
    assert setup.mx.rcpts.count(ALICE) == 2


@pytest.mark.parametrize("without_waiting", [False, True], ids=["verify", "cached"])
async def test_past_refresh_time_a_pass_is_answered_at_once_and_renewed_behind(
    setup: Setup, without_waiting: bool,
) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        first = await verifier.verify(ALICE)
        setup.clock.advance(86_400 + 1)
        stale = verifier.cached(ALICE) if without_waiting else await verifier.verify(ALICE)
        assert stale is not None and stale.cached and stale.checked_at == first.checked_at
        await wait_for_connections(setup.mx, 2)
        await wait_for_stored(
            setup.cache, ALICE,
            lambda r: r is not None and r.verdict.checked_at > first.checked_at, "the renewal")
        renewed = await verifier.verify(ALICE)
    assert renewed.cached and renewed.checked_at > first.checked_at
    assert setup.mx.rcpts.count(ALICE) == 2


async def test_a_renewal_started_without_waiting_calls_out_for_the_message_s_recipient(
    setup: Setup,
) -> None:
    """The policy listener asks `cached(address, recipient)` for every request: a renewal it
    starts takes the fallback sender of the recipient's domain, as a callout would."""
    script = MXScript(rcpt=KNOWN, mail=[("", Reply(550, "5.7.1 null sender not accepted"))])
    async with await setup.verifier(
            script, callout={"fallback_mail_from": "postmaster@{recipient_domain}"}) as verifier:
        with for_recipient("bob@first.test"):
            first = await verifier.verify(ALICE)
        setup.clock.advance(86_400 + 1)
        assert verifier.cached(ALICE, "carol@Customer.Test") is not None
        await wait_for_stored(
            setup.cache, ALICE,
            lambda r: r is not None and r.verdict.checked_at > first.checked_at, "the renewal")
        renewed = await setup.cache.get(parse_address(ALICE))
    assert first.sender == "postmaster@first.test"
    assert renewed is not None and renewed.verdict.sender == "postmaster@customer.test"


async def test_a_refresh_that_ends_transient_keeps_the_pass(setup: Setup) -> None:
    script = MXScript(rcpt=KNOWN)
    async with await setup.verifier(script) as verifier:
        first = await verifier.verify(ALICE)
        script.rcpt = [("*", TEMPFAIL)]
        setup.clock.advance(86_400 + 1)
        assert (await verifier.verify(ALICE)).cached
        await wait_for_connections(setup.mx, 2)
        await wait_for_stored(setup.cache, ALICE,
                              lambda r: r is not None and r.refresh_at > setup.clock(),
                              "the pass put back with a later refresh time")
        for _ in range(3):
            kept = await verifier.verify(ALICE)
            assert (kept.result, kept.cached, kept.checked_at) == (Result.PASS, True,
                                                                   first.checked_at)
        assert setup.mx.connections == 2  # the next refresh waits a transient lifetime
        setup.clock.advance(300)

        async def ask() -> int:
            """A mail server asking again, as it would: the refresh that ended transient
            may not have finished when the first asker comes."""
            await verifier.verify(ALICE)
            return setup.mx.connections

        await poll_until(ask, lambda connections: connections >= 3, WITHIN)
        await wait_for_connections(setup.mx, 3)


async def test_a_refresh_that_ends_in_failure_replaces_the_pass(setup: Setup) -> None:
    script = MXScript(rcpt=KNOWN)
    async with await setup.verifier(script) as verifier:
        await verifier.verify(ALICE)
        script.rcpt = []
        setup.clock.advance(86_400 + 1)
        await verifier.verify(ALICE)
        await wait_for_connections(setup.mx, 2)
        await wait_for_stored(setup.cache, ALICE,
                              lambda r: r is not None and r.verdict.result is Result.FAIL,
                              "the failure replacing the pass")
        replaced = await verifier.verify(ALICE)
    assert (replaced.result, replaced.reason, replaced.cached) == (
        Result.FAIL, Reason.MAILBOX_UNKNOWN, True)


async def test_a_known_null_sender_refuser_gets_the_fallback_sender_first(setup: Setup) -> None:
    script = MXScript(rcpt=KNOWN, mail=[("", Reply(550, "5.7.1 null sender refused"))])
    async with await setup.verifier(script) as verifier:
        first = await verifier.verify(ALICE)
        second = await verifier.verify(BOB)
    fallback = verifier.senders[1]
    assert first.sender == second.sender == fallback
    # ALICE's first session pipelined QUIT behind the refused null sender: her fallback went
    # in a second session; BOB's starts with the fallback.
    assert [[c for c in session.commands if c.startswith("MAIL")] for session in setup.mx.log
            ] == [["MAIL FROM:<>"], [f"MAIL FROM:<{fallback}>"], [f"MAIL FROM:<{fallback}>"]]


@pytest.mark.parametrize(("catch_all", "recheck"), [(False, False), (True, True)])
async def test_a_known_catch_all_answer_spares_the_probe(
    setup: Setup, catch_all: bool, recheck: bool
) -> None:
    script = MXScript(rcpt=KNOWN, catch_all=catch_all)
    async with await setup.verifier(
            script, callout={"recheck_catch_all": recheck}) as verifier:
        first = await verifier.verify(ALICE)
        second = await verifier.verify(BOB)
    assert first.catch_all is catch_all and second.catch_all is catch_all
    first_session, second_session = setup.mx.log
    assert len(first_session.rcpts) == 2  # the random probe, then alice
    assert second_session.rcpts == [BOB]


async def test_a_catch_all_domain_is_answered_from_its_fact_without_a_connection(
    setup: Setup,
) -> None:
    async with await setup.verifier(MXScript(catch_all=True)) as verifier:
        first = await verifier.verify(ALICE)
        second = await verifier.verify(BOB)
        setup.clock.advance(86_400)  # cache.catch_all_ttl: the fact is gone
        third = await verifier.verify("carol@example.test")
    assert (first.result, first.catch_all, first.cached) == (Result.PASS, True, False)
    assert (second.result, second.reason, second.catch_all, second.cached) == (
        Result.PASS, Reason.ACCEPTED, True, True)
    assert second.detail is not None and "catch-all" in second.detail
    assert (third.catch_all, third.cached) == (True, False)
    assert setup.mx.connections == 2
    assert BOB not in setup.mx.rcpts


async def test_a_transcript_is_a_callout_even_for_a_known_catch_all_domain(setup: Setup) -> None:
    async with await setup.verifier(MXScript(catch_all=True)) as verifier:
        await verifier.verify(ALICE)
        shown = await verifier.verify(BOB, transcript=True)
    assert (shown.catch_all, shown.cached) == (True, False)
    assert shown.transcript
    assert setup.mx.rcpts[-1] == BOB


async def test_useless_vrfy_is_not_tried_again(setup: Setup) -> None:
    script = MXScript(rcpt=KNOWN, advertise_vrfy=True)
    async with await setup.verifier(script, callout={"try_vrfy_first": True}) as verifier:
        await verifier.verify(ALICE)
        await verifier.verify(BOB)
    first_session, second_session = setup.mx.log
    assert any(c.startswith("VRFY") for c in first_session.commands)
    assert not any(c.startswith("VRFY") for c in second_session.commands)


async def test_an_unreachable_domain_is_not_redialled_until_the_fact_expires(
    setup: Setup,
) -> None:
    async with await setup.verifier(MXScript()) as verifier:
        await setup.mx.stop()
        first = await verifier.verify(ALICE)
        remembered = await verifier.verify(BOB)
        setup.clock.advance(120)
        redialled = await verifier.verify(BOB)
    assert (first.reason, first.stage, first.cached) == (Reason.CONNECTION_FAILED,
                                                         Stage.CONNECT, False)
    assert (remembered.reason, remembered.cached) == (Reason.CONNECTION_FAILED, True)
    assert remembered.detail is not None and "not dialled again" in remembered.detail
    assert redialled.cached is False


async def test_purging_a_domain_forgets_its_facts(setup: Setup) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        await verifier.verify(ALICE)
        assert await setup.cache.purge_domain("example.test") == 1
        await verifier.verify(BOB)
    assert [len(session.rcpts) for session in setup.mx.log] == [2, 2]


async def test_without_the_cache_nothing_is_read_or_stored(setup: Setup) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        first = await verifier.verify(ALICE, use_cache=False)
        second = await verifier.verify(ALICE, use_cache=False)
    assert not first.cached and not second.cached and first.expires_at is None
    assert setup.mx.rcpts.count(ALICE) == 2
    assert await setup.cache.get(parse_address(ALICE)) is None
    assert await setup.cache.facts("example.test") == {}


async def test_a_transcript_request_always_calls_out_and_updates_the_cache(
    setup: Setup,
) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        await verifier.verify(ALICE)
        shown = await verifier.verify(ALICE, transcript=True)
        cached = await verifier.verify(ALICE)
    assert not shown.cached and shown.transcript
    assert cached.cached and cached.transcript is None
    assert cached.checked_at == shown.checked_at
    assert setup.mx.rcpts.count(ALICE) == 2


async def test_verify_many_answers_cached_addresses_without_a_session(setup: Setup) -> None:
    async with await setup.verifier(MXScript(rcpt=KNOWN)) as verifier:
        await verifier.verify(ALICE)
        verdicts = await verifier.verify_many([ALICE, BOB, ALICE])
    assert [(v.address, v.cached) for v in verdicts] == [(ALICE, True), (BOB, False),
                                                          (ALICE, True)]
    assert setup.mx.rcpts.count(ALICE) == 1
    assert setup.mx.rcpts.count(BOB) == 1


class CacheLookups(NoObserver):
    def __init__(self) -> None:
        self.hits: list[bool] = []

    def cache_lookup(self, hit: bool) -> None:
        self.hits.append(hit)


async def test_a_cached_verdict_is_had_without_waiting_and_counted_as_a_hit(
    world: World, setup: Setup,
) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    lookups = CacheLookups()
    async with Verifier(world.config(), cache=setup.cache, clock=setup.clock,
                        observer=lookups) as verifier:
        assert verifier.cached(ALICE) is None  # not known yet: `verify` will look and count
        assert verifier.cached("not an address") is None
        fresh = await verifier.verify(ALICE)
        held = verifier.cached(ALICE)
        assert held == await verifier.verify(ALICE)
    assert held is not None and held.cached and held.checked_at == fresh.checked_at
    assert lookups.hits == [False, True, True]
