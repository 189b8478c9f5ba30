"""One scenario per MX behaviour: result, reason, stage, and what the MX saw on the wire."""

from __future__ import annotations

import pytest

from cbv.model import Reason, Result, Stage
from cbv.testing import MXScript, Reply
from tests.world import HELO, World

ALICE = "alice@example.test"
KNOWN = [("alice@example.test", Reply(250, "2.1.5 Ok"))]


def no_data_sent(world: World, ip: str) -> bool:
    return not any(c.upper().startswith("DATA") for c in world.server(ip).commands)


async def test_accepted_mailbox(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.PASS, Reason.ACCEPTED,
                                                               Stage.RCPT)
    assert verdict.catch_all is False
    assert verdict.mx == "mx1.example.test" and verdict.ip == "127.0.0.2"
    assert verdict.reply is not None and verdict.reply.code == 250
    assert verdict.reply.enhanced == "2.1.5"
    assert verdict.sender == ""
    mx = world.server("127.0.0.2")
    assert mx.commands[0] == f"EHLO {HELO}"
    assert mx.commands[1] == "MAIL FROM:<>"
    assert mx.rcpts[-1] == ALICE
    assert len(mx.rcpts) == 2  # random catch-all probe, then the address
    assert mx.commands[-1] == "QUIT"
    assert no_data_sent(world, "127.0.0.2")
    assert verdict.transcript and any(line.direction == "C" for line in verdict.transcript)


@pytest.mark.parametrize(
    "reply",
    [
        Reply(550, "5.1.1 <{addr}>: Recipient address rejected: User unknown"),
        Reply(550, "No such user here"),
        Reply(550, "Requested action not taken: mailbox unavailable"),
        Reply(553, "sorry, that domain isn't in my list of allowed rcpthosts"),
        Reply(550, "5.2.1 mailbox disabled"),
    ],
    ids=["enhanced-5.1.1", "plain-no-such-user", "plain-550", "plain-553", "enhanced-5.2.1"],
)
async def test_unknown_mailbox(world: World, reply: Reply) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt_reply_default=reply)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.FAIL,
                                                               Reason.MAILBOX_UNKNOWN, Stage.RCPT)
    assert verdict.reply is not None and verdict.reply.code == reply.code
    assert verdict.smtp_cbv_result == "error"
    assert world.server("127.0.0.2").rcpts[-1] == ALICE


async def test_catch_all_domain(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.catch_all) == (Result.PASS, Reason.ACCEPTED,
                                                                   True)
    probe, real = world.server("127.0.0.2").rcpts
    assert probe.endswith("@example.test") and probe != ALICE and real == ALICE


async def test_catch_all_detection_off_sends_one_rcpt(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    verdict = await world.verify(ALICE, callout={"detect_catch_all": False})
    assert verdict.result is Result.PASS and verdict.catch_all is None
    assert world.server("127.0.0.2").rcpts == [ALICE]


async def test_greylisting_is_transient(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=KNOWN, greylist_attempts=3)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.TRANSIENT,
                                                               Reason.GREYLISTED, Stage.RCPT)
    assert verdict.reply is not None and verdict.reply.code == 450


async def test_other_4xx_at_rcpt_is_tempfail(world: World) -> None:
    reply = Reply(451, "4.3.0 Temporary lookup failure")
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt_reply_default=reply)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.TEMPFAIL)


async def test_null_sender_refused_then_fallback_accepted(world: World) -> None:
    refuse_null = [("", Reply(550, "5.7.1 <>: null sender not accepted here"))]
    await world.mx("example.test", {"127.0.0.2": MXScript(mail=refuse_null, rcpt=KNOWN)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason) == (Result.PASS, Reason.ACCEPTED)
    assert verdict.sender == f"postmaster@{HELO}"
    # QUIT went with the first transaction (PIPELINING): the fallback gets a session of its
    # own, on the same host, and the domain is known to refuse the null sender from then on.
    assert [[c for c in session.commands if c.startswith("MAIL")]
            for session in world.server("127.0.0.2").log] == [
        ["MAIL FROM:<>"], [f"MAIL FROM:<postmaster@{HELO}>"]]


async def test_every_sender_refused(world: World) -> None:
    script = MXScript(mail_reply_default=Reply(550, "5.7.1 Sender rejected by policy"))
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.UNKNOWN,
                                                               Reason.SENDER_REJECTED, Stage.MAIL)
    assert verdict.smtp_cbv_result == "pass"
    mx = world.server("127.0.0.2")
    # Each sender tried in a session of its own (QUIT went with each transaction); the RCPTs
    # pipelined behind each refused MAIL are answered "need MAIL" and decide nothing.
    assert [[c for c in session.commands if c.startswith("MAIL")] for session in mx.log] == [
        ["MAIL FROM:<>"], [f"MAIL FROM:<postmaster@{HELO}>"]]
    assert all(session.commands[-1] == "QUIT" and session.commands.count("QUIT") == 1
               for session in mx.log)


async def test_first_mx_dead_second_answers(world: World) -> None:
    farm = await world.mx("example.test", {"127.0.0.2": MXScript(), "127.0.0.3": MXScript(
        rcpt=KNOWN)})
    await farm.servers["127.0.0.2"].stop()
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.mx) == (Result.PASS, Reason.ACCEPTED,
                                                            "mx2.example.test")


async def test_the_fallback_sender_after_a_pipelined_quit_goes_to_the_same_host(
    world: World,
) -> None:
    """A session left unfinished by the null sender's refusal is not the host's failure:
    the fallback sender goes back to it, and the next mail exchanger is never dialled."""
    refuse_null = [("", Reply(550, "5.7.1 <>: null sender not accepted here"))]
    await world.mx("example.test", {"127.0.0.2": MXScript(mail=refuse_null, rcpt=KNOWN),
                                    "127.0.0.3": MXScript(rcpt=KNOWN)}, prefs=[5, 50])
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.mx, verdict.sender) == (
        Result.PASS, "mx1.example.test", f"postmaster@{HELO}")
    assert world.server("127.0.0.2").connections == 2
    assert world.server("127.0.0.3").connections == 0


async def test_mx_order_follows_preference_not_listing(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(), "127.0.0.3": MXScript(rcpt=KNOWN)},
                   prefs=[50, 5])
    verdict = await world.verify(ALICE)
    assert verdict.mx == "mx2.example.test" and verdict.result is Result.PASS
    assert world.server("127.0.0.2").connections == 0


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (Reply(550, "5.7.1 Client host [127.0.0.1] blocked using zen.spamhaus.org"),
         Reason.CLIENT_BLOCKED),
        (Reply(554, "Service unavailable; Client host blocked using a DNSBL"),
         Reason.CLIENT_BLOCKED),
        (Reply(550, "5.7.1 <{addr}>: Relay access denied"), Reason.POLICY_REJECTION),
        (Reply(550, "5.7.606 Access denied, banned sending IP"), Reason.CLIENT_BLOCKED),
    ],
    ids=["5.7.1-dnsbl", "plain-554-blocked", "5.7.1-relay", "5.7.606"],
)
async def test_policy_block_at_rcpt_is_not_a_failure(
    world: World, reply: Reply, reason: Reason
) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt_reply_default=reply)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.UNKNOWN, reason,
                                                               Stage.RCPT)
    assert verdict.evidence is not None


async def test_mailbox_full(world: World) -> None:
    reply = Reply(552, "5.2.2 <{addr}>: mailbox full")
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt_reply_default=reply)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason) == (Result.UNKNOWN, Reason.MAILBOX_FULL)


@pytest.mark.parametrize(
    ("banner", "reason"),
    [(Reply(554, "5.7.1 mx.example.test: your IP is on our blocklist"), Reason.CLIENT_BLOCKED),
     (Reply(554, "5.3.2 mx.example.test: no SMTP service here"), Reason.VERIFIER_REJECTED),
     (Reply(571, "No PTR Record found"), Reason.CLIENT_BLOCKED)],
    ids=["blocklist", "no-service", "unfamiliar-code"],
)
async def test_5xx_banner_rejects_the_verifier(
    world: World, banner: Reply, reason: Reason
) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(banner=banner)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.UNKNOWN, reason,
                                                               Stage.BANNER)
    assert world.server("127.0.0.2").commands == ["QUIT"]
    assert not any(c.startswith(("MAIL", "RCPT")) for c in world.server("127.0.0.2").commands)


async def test_5xx_to_ehlo_and_helo_rejects_the_verifier(world: World) -> None:
    script = MXScript(ehlo=Reply(550, "go away"), helo=Reply(550, "5.7.1 go away"))
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert (verdict.reason, verdict.stage) == (Reason.VERIFIER_REJECTED, Stage.EHLO)
    assert world.server("127.0.0.2").commands[:2] == [f"EHLO {HELO}", f"HELO {HELO}"]


async def test_ehlo_refused_falls_back_to_helo(world: World) -> None:
    script = MXScript(ehlo=Reply(502, "5.5.2 Error: command not implemented"), rcpt=KNOWN)
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert verdict.result is Result.PASS
    assert world.server("127.0.0.2").commands[:3] == [f"EHLO {HELO}", f"HELO {HELO}",
                                                      "MAIL FROM:<>"]


async def test_421_banner_moves_to_next_mx(world: World) -> None:
    busy = MXScript(banner=Reply(421, "4.3.2 Service shutting down, try again later"))
    await world.mx("example.test", {"127.0.0.2": busy, "127.0.0.3": MXScript(rcpt=KNOWN)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.mx) == (Result.PASS, "mx2.example.test")
    assert world.server("127.0.0.2").connections == 1


async def test_421_everywhere_is_transient(world: World) -> None:
    busy = MXScript(banner=Reply(421, "4.3.2 Service shutting down"))
    await world.mx("example.test", {"127.0.0.2": busy, "127.0.0.3": busy})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.TRANSIENT,
                                                               Reason.TEMPFAIL, Stage.BANNER)
    assert verdict.mx == "mx2.example.test"


async def test_null_mx_fails_without_connecting(world: World) -> None:
    farm = await world.mx("other.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    world.dns.add_null_mx("example.test")
    world.dns.add_a("example.test", "127.0.0.2")
    verdict = await world.verify(ALICE, port=farm.port)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.FAIL,
                                                               Reason.NO_MAIL_DOMAIN, Stage.DNS)
    assert verdict.detail is not None and "null MX" in verdict.detail
    assert world.dns.query_count(rtype="A") == 0
    assert world.server("127.0.0.2").connections == 0


async def test_nxdomain_fails(world: World) -> None:
    world.dns.set_nxdomain("example.test")
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.FAIL,
                                                               Reason.NO_MAIL_DOMAIN, Stage.DNS)


async def test_servfail_is_transient(world: World) -> None:
    world.dns.set_servfail("example.test")
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.TRANSIENT,
                                                               Reason.DNS_TEMPFAIL, Stage.DNS)


async def test_dns_silence_is_transient_within_budget(world: World) -> None:
    world.dns.set_timeout("example.test")
    verdict = await world.verify(ALICE, dns={"timeout": 0.5})
    assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.DNS_TEMPFAIL)


async def test_nodata_uses_the_domains_own_address(world: World) -> None:
    farm = await world.mx("other.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    world.dns.add_a("example.test", "127.0.0.2")
    verdict = await world.verify(ALICE, port=farm.port)
    assert (verdict.result, verdict.mx, verdict.ip) == (Result.PASS, "example.test", "127.0.0.2")


async def test_nodata_and_no_address_is_no_mail_domain(world: World) -> None:
    world.dns.add_txt("example.test", "v=spf1 -all")
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason) == (Result.FAIL, Reason.NO_MAIL_DOMAIN)


async def test_mx_host_behind_cname_chain(world: World) -> None:
    farm = await world.mx("other.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    world.dns.add_mx("example.test", [(10, "alias.example.test")])
    world.dns.add_cname("alias.example.test", "alias2.example.test")
    world.dns.add_cname("alias2.example.test", "mx1.other.test")
    verdict = await world.verify(ALICE, port=farm.port)
    assert (verdict.result, verdict.ip) == (Result.PASS, "127.0.0.2")


async def test_forbidden_network_is_never_dialled(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(rcpt=KNOWN)})
    verdict = await world.verify(ALICE, security={"allowed_target_networks": []})
    assert (verdict.result, verdict.reason) == (Result.UNKNOWN, Reason.TARGET_FORBIDDEN)
    assert verdict.detail is not None and "127.0.0.2" in verdict.detail
    assert world.server("127.0.0.2").connections == 0


async def test_tarpit_banner_times_out_within_budget(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(banner=None)})
    verdict = await world.verify(ALICE, callout={"command_timeout": 0.3, "total_timeout": 2.0})
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.TRANSIENT,
                                                               Reason.TIMEOUT, Stage.BANNER)
    assert verdict.duration_ms < 2000


async def test_total_budget_caps_many_slow_hosts(world: World) -> None:
    slow = MXScript(banner=None)
    await world.mx("example.test", {"127.0.0.2": slow, "127.0.0.3": slow, "127.0.0.4": slow})
    verdict = await world.verify(ALICE, callout={"command_timeout": 0.4, "total_timeout": 0.6})
    assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.TIMEOUT)
    assert world.server("127.0.0.4").connections == 0


@pytest.mark.parametrize("stage", ["mail", "ehlo"])
async def test_connection_dropped_mid_dialogue(world: World, stage: str) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(drop_at=stage)})  # type: ignore[arg-type]
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason) == (Result.TRANSIENT, Reason.CONNECTION_FAILED)
    assert verdict.stage == Stage(stage)


async def test_connection_dropped_at_rcpt_is_final(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(drop_at="rcpt"),
                                    "127.0.0.3": MXScript(rcpt=KNOWN)})
    verdict = await world.verify(ALICE)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.TRANSIENT,
                                                               Reason.CONNECTION_FAILED,
                                                               Stage.RCPT)
    assert world.server("127.0.0.3").connections == 0


async def test_vrfy_supported_decides_without_rcpt(world: World) -> None:
    script = MXScript(advertise_vrfy=True, vrfy=[(ALICE, Reply(250, "2.1.5 <alice@example.test>"))])
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE, callout={"try_vrfy_first": True})
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.PASS,
                                                               Reason.VRFY_ACCEPTED, Stage.VRFY)
    assert world.server("127.0.0.2").rcpts == []
    assert f"VRFY {ALICE}" in world.server("127.0.0.2").commands


async def test_vrfy_unknown_user_fails(world: World) -> None:
    script = MXScript(advertise_vrfy=True,
                      vrfy_reply_default=Reply(550, "5.1.1 <{addr}>: User unknown"))
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE, callout={"try_vrfy_first": True})
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.FAIL,
                                                               Reason.MAILBOX_UNKNOWN, Stage.VRFY)


@pytest.mark.parametrize("reply", [Reply(252, "2.0.0 Cannot VRFY user"),
                                   Reply(502, "5.5.1 VRFY command is disabled")])
async def test_vrfy_unsupported_falls_through_to_rcpt(world: World, reply: Reply) -> None:
    script = MXScript(advertise_vrfy=True, vrfy_reply_default=reply, rcpt=KNOWN)
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE, callout={"try_vrfy_first": True})
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.PASS, Reason.ACCEPTED,
                                                               Stage.RCPT)
    commands = world.server("127.0.0.2").commands
    assert commands.index(f"VRFY {ALICE}") < commands.index("MAIL FROM:<>")


async def test_starttls_offered_is_used(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(starttls=True, rcpt=KNOWN)})
    verdict = await world.verify(ALICE)
    assert verdict.result is Result.PASS
    mx = world.server("127.0.0.2")
    assert mx.log[0].tls
    assert mx.commands[:3] == [f"EHLO {HELO}", "STARTTLS", f"EHLO {HELO}"]


async def test_starttls_never_keeps_plain_text(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(starttls=True, rcpt=KNOWN)})
    verdict = await world.verify(ALICE, callout={"starttls": "never"})
    assert verdict.result is Result.PASS
    assert "STARTTLS" not in world.server("127.0.0.2").commands


async def test_failed_tls_handshake_retries_in_plain_text(world: World) -> None:
    script = MXScript(starttls=True, starttls_break=True, rcpt=KNOWN)
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert verdict.result is Result.PASS
    mx = world.server("127.0.0.2")
    assert mx.connections == 2
    assert "STARTTLS" not in mx.log[1].commands


async def test_starttls_refused_continues_in_plain_text(world: World) -> None:
    script = MXScript(starttls=True, starttls_reply=Reply(454, "4.7.0 TLS not available"),
                      rcpt=KNOWN)
    await world.mx("example.test", {"127.0.0.2": script})
    verdict = await world.verify(ALICE)
    assert verdict.result is Result.PASS
    assert world.server("127.0.0.2").connections == 1


@pytest.mark.parametrize(
    "address",
    [
        "alice@example.test\r\nRSET",
        "alice@example.test>\r\nDATA",
        "alice@example.test\nRCPT TO:<root@example.test>",
        "<alice@example.test>",
        "alice\x00@example.test",
        "alice@exam ple.test",
        "alice@example.test> SIZE=1",
        "",
        "@example.test",
        "alice@",
    ],
)
async def test_injection_attempts_never_reach_the_wire(world: World, address: str) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    verdict = await world.verify(address)
    assert (verdict.result, verdict.reason, verdict.stage) == (Result.FAIL, Reason.BAD_SYNTAX,
                                                               Stage.SYNTAX)
    assert verdict.detail
    assert "\n" not in verdict.address and "\r" not in verdict.address
    assert world.server("127.0.0.2").connections == 0


async def test_map_asks_another_domains_mx(world: World) -> None:
    await world.mx("real.test", {"127.0.0.2": MXScript(rcpt=[("bob@alias.test",
                                                              Reply(250, "2.1.5 Ok"))])})
    verdict = await world.verify("bob@alias.test", callout={"map": {"alias.test": "real.test"}})
    assert (verdict.result, verdict.mx) == (Result.PASS, "mx1.real.test")
    assert world.server("127.0.0.2").rcpts[-1] == "bob@alias.test"
    assert world.dns.query_count("alias.test") == 0


async def test_map_and_routes_keys_written_in_unicode_match(world: World) -> None:
    """Keys are normalised as addresses' domains are: "Bücher.test" is xn--bcher-kva.test."""
    await world.mx("real.test", {"127.0.0.2": MXScript(catch_all=True)})
    mapped = await world.verify("bob@bücher.test", callout={"map": {"Bücher.Test.": "Real.test"}})
    assert (mapped.result, mapped.mx) == (Result.PASS, "mx1.real.test")
    assert world.dns.query_count("xn--bcher-kva.test") == 0
    route = {"BÜCHER.test": [f"127.0.0.2:{world.farms[-1].port}"]}
    routed = await world.verify("carol@bücher.test", callout={"routes": route})
    assert (routed.result, routed.ip) == (Result.PASS, "127.0.0.2")


async def test_routes_call_forward_without_dns(world: World) -> None:
    farm = await world.mx("store.test", {"127.0.0.2": MXScript(rcpt=[("carol@gw.test",
                                                                      Reply(250, "2.1.5 Ok"))])})
    route = {"gw.test": [f"127.0.0.2:{farm.port}"]}
    verdict = await world.verify("carol@gw.test", callout={"routes": route})
    assert (verdict.result, verdict.ip, verdict.port) == (Result.PASS, "127.0.0.2", farm.port)
    assert world.dns.query_count("gw.test") == 0
    refused = await world.verify("dave@gw.test", callout={"routes": route})
    assert refused.result is Result.FAIL


async def test_route_to_forbidden_network_is_not_dialled(world: World) -> None:
    farm = await world.mx("store.test", {"127.0.0.2": MXScript(catch_all=True)})
    route = {"gw.test": [f"127.0.0.2:{farm.port}"]}
    verdict = await world.verify("carol@gw.test", callout={"routes": route},
                                 security={"allowed_target_networks": []})
    assert verdict.reason is Reason.TARGET_FORBIDDEN
    assert world.server("127.0.0.2").connections == 0


async def test_smtputf8_address_needs_the_extension(world: World) -> None:
    await world.mx("example.test", {"127.0.0.2": MXScript(catch_all=True)})
    verdict = await world.verify("jürgen@example.test")
    assert (verdict.result, verdict.reason) == (Result.UNKNOWN, Reason.SMTPUTF8_UNSUPPORTED)
    assert world.server("127.0.0.2").rcpts == []


async def test_smtputf8_address_with_the_extension(world: World) -> None:
    ehlo = Reply(250, ["mx.example.test", "PIPELINING", "SMTPUTF8", "ENHANCEDSTATUSCODES"])
    await world.mx("example.test", {"127.0.0.2": MXScript(ehlo=ehlo, catch_all=True)})
    verdict = await world.verify("jürgen@example.test")
    assert verdict.result is Result.PASS
    assert "MAIL FROM:<> SMTPUTF8" in world.server("127.0.0.2").commands


async def test_idna_domain_is_verified_as_a_label(world: World) -> None:
    await world.mx("xn--bcher-kva.test", {"127.0.0.2": MXScript(catch_all=True)})
    verdict = await world.verify("anna@Bücher.test")
    assert verdict.address == "anna@xn--bcher-kva.test"
    assert verdict.result is Result.PASS
