"""The smtpcbd listener in process: one line in, one line out, then closed."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from cbv.config import CacheConfig
from cbv.model import Reason, Result, SmtpReply, Verdict, utcnow
from cbv.policy import Action
from cbv.policy.decision import Decision
from cbv.servers.daemon import Daemon
from cbv.servers.logs import fields_of
from cbv.servers.smtpcbd import callback_answer
from cbv.testing import MXFarm
from tests.servers.clients import running, sender_domains, server_config, smtpcbd
from tests.world import World


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


@pytest_asyncio.fixture
async def daemon_with(world: World, farm: MXFarm) -> AsyncIterator[Any]:
    contexts: list[Any] = []

    async def start(**sections: dict[str, Any]) -> Daemon:
        context = running(server_config(world, farm, **sections))
        contexts.append(context)
        return await context.__aenter__()

    yield start
    for context in reversed(contexts):
        await context.__aexit__(None, None, None)


def fields(line: str) -> list[str]:
    assert line.endswith("\n")
    parts = line[:-1].split(":")
    assert len(parts) == 6, line
    return parts


async def test_verdicts_map_to_ok_fail_tempfail(daemon_with: Any) -> None:
    address = (await daemon_with()).addresses()["smtpcbd"]
    before = int(time.time())
    code, msg, addr, server, stamp, expire = fields(await smtpcbd(address, b"<nobody@fail.test>\n"))
    assert (code, addr, server) == ("FAIL", "nobody@fail.test", "mx.fail.test")
    assert msg == ("mailbox_unknown 550 5.1.1 <nobody@fail.test>; Recipient address rejected; "
                   "User unknown in local recipient table")
    assert before <= int(stamp) <= time.time()
    assert int(expire) == int(stamp) + CacheConfig().fail_ttl
    code, msg, addr, server, _, expire = fields(await smtpcbd(address, b"<alice@pass.test>\n"))
    assert (code, msg, addr, server) == ("OK", "accepted 250 2.1.5 Ok", "alice@pass.test",
                                         "mx.pass.test")
    assert fields(await smtpcbd(address, b"<someone@grey.test>\n"))[0] == "TEMPFAIL"
    assert fields(await smtpcbd(address, b"<someone@policy.test>\n"))[0] == "OK"


async def test_the_null_sender_is_ok_without_a_callout(daemon_with: Any, world: World) -> None:
    address = (await daemon_with()).addresses()["smtpcbd"]
    code, msg, addr, server, stamp, expire = fields(await smtpcbd(address, b"<>\n"))
    assert (code, msg, addr, server) == ("OK", "not checked (null sender)", "", "-")
    assert stamp == expire


async def test_exim_style_bare_address_and_end_of_input(daemon_with: Any) -> None:
    address = (await daemon_with()).addresses()["smtpcbd"]
    assert fields(await smtpcbd(address, b"nobody@fail.test", half_close=True))[0] == "FAIL"
    assert fields(await smtpcbd(address, b"nobody@fail.test\r\n"))[0] == "FAIL"


async def test_bad_input_is_a_clear_tempfail_and_harms_nothing(
    daemon_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    address = (await daemon_with()).addresses()["smtpcbd"]
    assert fields(await smtpcbd(address, b"<nobody@fail.test\n"))[:2] == [
        "TEMPFAIL", "bad request; unbalanced angle brackets"]
    assert fields(await smtpcbd(address, b"\xff\xfe\n"))[:2] == [
        "TEMPFAIL", "bad request; request is not UTF-8"]
    assert fields(await smtpcbd(address, b"x" * 5000 + b"\n"))[:2] == [
        "TEMPFAIL", "bad request; line longer than 1024 bytes"]
    assert fields(await smtpcbd(address, b"<not an address>\n"))[:2] == [
        "FAIL", "bad_syntax (address has no '@')"]
    assert fields(await smtpcbd(address, b"<nobody@fail.test>\n"))[0] == "FAIL"
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 3


async def test_only_the_first_line_is_answered(daemon_with: Any) -> None:
    address = (await daemon_with()).addresses()["smtpcbd"]
    answer = await smtpcbd(address, b"<alice@pass.test>\n<nobody@fail.test>\n")
    assert fields(answer)[0] == "OK"


async def test_slow_callouts_are_tempfail_in_progress(daemon_with: Any) -> None:
    address = (await daemon_with(server={"answer_within": 0.1})).addresses()["smtpcbd"]
    assert fields(await smtpcbd(address, b"<someone@slow.test>\n"))[:2] == [
        "TEMPFAIL", "address verification in progress"]


async def test_site_policy_exclusions_and_dry_run_apply(
    daemon_with: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cbv")
    daemon = await daemon_with(policy={"allowlist": ["grey.test"], "dry_run": True})
    address = daemon.addresses()["smtpcbd"]
    assert fields(await smtpcbd(address, b"<someone@grey.test>\n"))[:2] == [
        "OK", "not checked (allowlisted)"]
    assert fields(await smtpcbd(address, b"<postmaster@verifier.cbv.test>\n"))[:2] == [
        "OK", "not checked (own callout sender)"]
    code, msg, *_ = fields(await smtpcbd(address, b"<nobody@fail.test>\n"))
    assert (code, msg.split(";")[0]) == ("OK", "dry run, would be FAIL")
    logged = [fields_of(r) for r in caplog.records if r.name == "cbv.decision"]
    assert [(d["listener"], d["result"], d["action"]) for d in logged] == [
        ("smtpcbd", "excluded", "accept"), ("smtpcbd", "excluded", "accept"),
        ("smtpcbd", "fail", "reject")]
    assert str(logged[2]["answer"]).startswith("OK:dry run")


def test_expiry_comes_from_the_verdict_when_the_cache_set_it() -> None:
    checked = utcnow()
    verdict = Verdict(address="a@b.test", result=Result.TRANSIENT, reason=Reason.GREYLISTED,
                      checked_at=checked, expires_at=checked.replace(year=checked.year + 1),
                      mx="mx:b", reply=SmtpReply(code=450, text="try\nlater"))
    decision = Decision(Action.DEFER, "a@b.test", "transient", "greylisted")
    line = callback_answer(decision, verdict, CacheConfig(), True, 0).decode()
    code, msg, _, server, _, expire = fields(line)
    assert (code, msg, server) == ("TEMPFAIL", "greylisted 450 try", "mx;b")
    assert int(expire) == int(verdict.expires_at.timestamp())  # type: ignore[union-attr]


def test_internal_errors_answer_by_fail_open() -> None:
    error = Decision(Action.ACCEPT, "a@b.test", "error", "internal_error")
    assert callback_answer(error, None, CacheConfig(), True, 5).decode() == (
        "OK:verification failed (internal error):a@b.test:-:5:5\n")
    assert callback_answer(error, None, CacheConfig(), False, 5).decode() == (
        "TEMPFAIL:verification failed (internal error):a@b.test:-:5:5\n")
