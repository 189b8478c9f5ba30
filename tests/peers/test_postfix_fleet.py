"""A fleet: two Postfix instances, each asking a `cbv serve` of its own, the two sharing
one Redis as docs/integrations/postfix.md sets them up. What one cbv learnt, the other
answers from the cache: the sender's mail server is called once for the whole fleet."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bench.mail_servers import Postfix, free_port, main_cf_settings
from tests.peers.guides import settings, snippet
from tests.peers.mail_world import CbvServe, MailWorld, require, send
from tests.peers.redis_server import RedisProcess

pytestmark = pytest.mark.peers
require("postfix")


@dataclass
class Member:
    postfix: Postfix
    port: int
    cbv: CbvServe


@pytest.fixture(scope="module")
def fleet(mail_world: MailWorld, started: Callable[[Any], Any],
          redis_standalone: RedisProcess) -> list[Member]:
    redis_standalone.client().flushall()
    shared_cache = settings("postfix", "cbv-fleet", redis=redis_standalone.url)
    relay = (f"relay_domains = example.test\n"
             f"relay_transport = smtp:[127.0.0.1]:{mail_world.sink.port}\n")
    members = []
    for name in ("mx1", "mx2"):
        cbv = started(mail_world.start_cbv(
            settings("postfix", "cbv-policy", policy="127.0.0.1:0"), shared_cache))
        port = free_port()
        restrictions = snippet("postfix", "sender-restrictions", policy=cbv.addresses["policy"])
        postfix = started(Postfix(f"fleet-{name}", mail_world.resolver, relay,
                                  {port: main_cf_settings(restrictions)}))
        postfix.start()
        members.append(Member(postfix, port, cbv))
    return members


def test_a_sender_verified_through_one_is_answered_from_the_cache_through_the_other(
    fleet: list[Member], mail_world: MailWorld
) -> None:
    sender = "fleet@catch-all.zoo.test"
    for member in fleet:
        sent = send(member.port, sender)
        assert sent.accepted, sent
        mail_world.sink.delivered(sent.message_id)
    first, second = (member.cbv.decision(sender) for member in fleet)
    assert (first["result"], first["cached"]) == ("pass", False)
    assert (second["result"], second["cached"]) == ("pass", True)
    assert mail_world.callouts(sender) == 1


def test_a_sender_refused_by_one_is_refused_by_the_other_without_a_callout(
    fleet: list[Member], mail_world: MailWorld
) -> None:
    sender = "ghost@unknown.zoo.test"
    replies = [send(member.port, sender) for member in fleet]
    assert [(sent.stage, sent.code) for sent in replies] == [("rcpt", 550)] * 2, replies
    assert replies[0].text == replies[1].text
    assert [member.cbv.decision(sender)["cached"] for member in fleet] == [False, True]
    assert mail_world.callouts(sender) == 1
