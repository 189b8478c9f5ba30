"""The plain-answer DNS codec, against messages dnspython builds."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rrset
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbv.protocol.dns_wire import AAAA, MX, NOERROR, NXDOMAIN, NotPlain, decode_reply, encode_query

SOA_TEXT = "ns.example.test. hostmaster.example.test. 1 7200 900 1209600 60"


def reply_to(wire: bytes, *answers: dns.rrset.RRset, rcode: dns.rcode.Rcode = dns.rcode.NOERROR,
             soa_ttl: int | None = None) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    response.answer.extend(answers)
    if soa_ttl is not None:
        response.authority.append(
            dns.rrset.from_text("example.test.", soa_ttl, "IN", "SOA", SOA_TEXT))
    return response.to_wire()


def test_the_question_is_the_one_dnspython_asks() -> None:
    ours = dns.message.from_wire(encode_query("Mail.Example.test", MX, 4242))
    assert ours.id == 4242
    assert ours.flags & dns.flags.RD
    assert ours.question == dns.message.make_query("mail.example.test.", "MX").question


def test_mx_records_through_compressed_names() -> None:
    wire = encode_query("example.test", MX, 7)
    answer = dns.rrset.from_text("example.test.", 300, "IN", "MX", "10 mx1.example.test.",
                                 "20 MX2.Example.test.", "10 mx1.example.test.")
    reply = decode_reply(reply_to(wire, answer), 7, "example.test", MX)
    assert reply.rcode == NOERROR
    assert sorted(reply.records) == [(10, "mx1.example.test"), (20, "mx2.example.test")]
    assert reply.ttl == 300


def test_the_null_mx_exchange_is_the_empty_name() -> None:
    wire = encode_query("null.test", MX, 1)
    answer = dns.rrset.from_text("null.test.", 60, "IN", "MX", "0 .")
    assert decode_reply(reply_to(wire, answer), 1, "null.test", MX).records == ((0, ""),)


def test_ipv6_addresses_read_as_dnspython_writes_them() -> None:
    wire = encode_query("h.test", AAAA, 9)
    answer = dns.rrset.from_text("h.test.", 30, "IN", "AAAA", "::ffff:192.0.2.1", "2001:db8::1")
    reply = decode_reply(reply_to(wire, answer), 9, "h.test", AAAA)
    assert sorted(reply.records) == ["2001:db8::1", "::ffff:192.0.2.1"]


def test_negative_answers_carry_their_soa_ttl() -> None:
    wire = encode_query("gone.test", MX, 3)
    nxdomain = decode_reply(reply_to(wire, rcode=dns.rcode.NXDOMAIN, soa_ttl=120), 3,
                            "gone.test", MX)
    assert (nxdomain.rcode, nxdomain.records, nxdomain.soa_ttl) == (NXDOMAIN, (), 60)
    nodata = decode_reply(reply_to(wire), 3, "gone.test", MX)
    assert (nodata.rcode, nodata.records, nodata.soa_ttl) == (NOERROR, (), None)


def test_an_alias_is_left_to_the_full_resolver() -> None:
    wire = encode_query("alias.test", MX, 5)
    cname = dns.rrset.from_text("alias.test.", 60, "IN", "CNAME", "real.test.")
    with pytest.raises(NotPlain):
        decode_reply(reply_to(wire, cname), 5, "alias.test", MX)


def test_truncated_replies_and_replies_to_other_questions_are_not_plain() -> None:
    wire = encode_query("example.test", MX, 11)
    answer = dns.rrset.from_text("example.test.", 300, "IN", "MX", "10 mx.example.test.")
    good = reply_to(wire, answer)
    truncated = good[:2] + bytes([good[2] | 0x02]) + good[3:]
    for bad, ident, name in ((truncated, 11, "example.test"), (good, 12, "example.test"),
                             (good, 11, "other.test"), (good[:20], 11, "example.test"),
                             (wire, 11, "example.test")):
        with pytest.raises(NotPlain):
            decode_reply(bad, ident, name, MX)


def test_names_the_codec_cannot_write_are_left_to_the_full_resolver() -> None:
    for name in ("bücher.test", "a..test", "x" * 64 + ".test", "a\\.b.test"):
        with pytest.raises(NotPlain):
            encode_query(name, MX, 1)


@pytest.mark.parametrize("label", [b"mx\r\nforged", b"a.b", b"mx one", b"mx\x00", b"m\\x"])
def test_exchanges_that_are_not_host_names_are_left_to_the_full_resolver(label: bytes) -> None:
    """dnspython writes such a name escaped; raw, it would reach logs and cache keys."""
    wire = encode_query("example.test", MX, 13)
    exchange = dns.name.Name([label, b"test", b""]).to_text()
    answer = dns.rrset.from_text("example.test.", 300, "IN", "MX", f"10 {exchange}")
    with pytest.raises(NotPlain):
        decode_reply(reply_to(wire, answer), 13, "example.test", MX)


@given(st.binary(max_size=600))
def test_any_bytes_decode_or_are_not_plain(data: bytes) -> None:
    try:
        reply = decode_reply(data, 1, "example.test", MX)
    except NotPlain:
        return
    assert all(isinstance(record, tuple) for record in reply.records)
