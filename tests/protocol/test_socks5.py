"""The SOCKS5 handshake codec: what it sends, how much it reads, what each refusal means."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbv.egress.settings import ProxyAddress
from cbv.protocol.socks5 import ProxyFailed, Socks5Handshake, TargetUnreachable

OPEN = ProxyAddress("127.0.0.1", 1080)
LOCKED = ProxyAddress("127.0.0.1", 1080, "user", "secret")
CONNECT_V4 = b"\x05\x01\x00\x01\xc0\x00\x02\x19\x00\x19"  # CONNECT 192.0.2.25:25
SUCCEEDED_V4 = b"\x05\x00\x00\x01\x7f\x00\x00\x01\x04\x38"


def run(handshake: Socks5Handshake, *replies: bytes) -> list[bytes]:
    """Feed each reply exactly as the adapter would (never more than needed); what was sent."""
    sent = [handshake.data_to_send()]
    for reply in replies:
        data = reply
        while data:
            needed = handshake.needed()
            assert needed > 0
            handshake.feed(data[:needed])
            data = data[needed:]
        sent.append(handshake.data_to_send())
    return sent


def test_without_authentication_it_connects_to_the_ip() -> None:
    handshake = Socks5Handshake(OPEN, "192.0.2.25", 25)
    sent = run(handshake, b"\x05\x00", SUCCEEDED_V4)
    assert sent == [b"\x05\x01\x00", CONNECT_V4, b""]
    assert handshake.done and handshake.needed() == 0


def test_with_a_username_it_offers_rfc_1929_and_authenticates() -> None:
    handshake = Socks5Handshake(LOCKED, "192.0.2.25", 25)
    sent = run(handshake, b"\x05\x02", b"\x01\x00", SUCCEEDED_V4)
    assert sent[0] == b"\x05\x02\x02\x00"
    assert sent[1] == b"\x01\x04user\x06secret"
    assert sent[2] == CONNECT_V4
    assert handshake.done


def test_ipv6_targets_are_sent_as_addresses() -> None:
    handshake = Socks5Handshake(OPEN, "2001:db8::25", 25)
    sent = run(handshake, b"\x05\x00")
    assert sent[1][:4] == b"\x05\x01\x00\x04" and len(sent[1]) == 4 + 16 + 2


def test_a_reply_with_a_bound_name_is_read_to_its_end_and_no_further() -> None:
    handshake = Socks5Handshake(OPEN, "192.0.2.25", 25)
    run(handshake, b"\x05\x00")
    assert handshake.needed() == 5
    handshake.feed(b"\x05\x00\x00\x03\x09")
    assert handshake.needed() == 9 + 2
    handshake.feed(b"proxy.lan\x00\x19")
    assert handshake.done


def test_refused_credentials_fail_the_proxy() -> None:
    with pytest.raises(ProxyFailed, match="refused the username and password"):
        run(Socks5Handshake(LOCKED, "192.0.2.25", 25), b"\x05\x02", b"\x01\x01")


def test_a_proxy_that_wants_credentials_we_lack_says_so() -> None:
    with pytest.raises(ProxyFailed, match="add them to the URL"):
        run(Socks5Handshake(OPEN, "192.0.2.25", 25), b"\x05\x02")


def test_no_acceptable_method_fails_the_proxy() -> None:
    with pytest.raises(ProxyFailed, match="none of our authentication methods"):
        run(Socks5Handshake(OPEN, "192.0.2.25", 25), b"\x05\xff")


@pytest.mark.parametrize(("code", "words"), [(3, "network unreachable"),
                                             (4, "host unreachable"),
                                             (5, "connection refused"), (6, "timed out")])
def test_the_proxy_failing_to_reach_the_target_is_the_targets_failure(code: int, words: str
                                                                      ) -> None:
    reply = bytes([5, code]) + SUCCEEDED_V4[2:]
    with pytest.raises(TargetUnreachable, match=words):
        run(Socks5Handshake(OPEN, "192.0.2.25", 25), b"\x05\x00", reply)


def test_a_ruleset_refusal_fails_the_proxy() -> None:
    reply = b"\x05\x02" + SUCCEEDED_V4[2:]
    with pytest.raises(ProxyFailed, match="not allowed by ruleset"):
        run(Socks5Handshake(OPEN, "192.0.2.25", 25), b"\x05\x00", reply)


def test_the_password_never_shows_in_its_text() -> None:
    assert "secret" not in str(LOCKED) and "user@" in str(LOCKED)


@given(st.binary(min_size=1, max_size=600))
def test_garbage_from_a_proxy_is_a_clear_failure_with_bounded_reads(garbage: bytes) -> None:
    handshake = Socks5Handshake(LOCKED, "192.0.2.25", 25)
    handshake.data_to_send()
    data = garbage
    failure = ""
    try:
        while data and not handshake.done:
            needed = handshake.needed()
            assert 0 < needed <= 4 + 1 + 255 + 2  # the longest SOCKS5 reply
            handshake.feed(data[:needed])
            handshake.data_to_send()
            data = data[needed:]
    except (ProxyFailed, TargetUnreachable) as exc:
        failure = str(exc)
    assert failure or handshake.done or handshake.needed() > 0
