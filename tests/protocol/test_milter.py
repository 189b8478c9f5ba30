"""The milter codec: every command and response round-trips, any split of a valid stream
decodes the same, arbitrary bytes raise nothing but MilterProtocolError, negotiation
asks only for what cbv needs and the MTA offers, and the session never answers a command
the MTA did not wait on."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbv.protocol.milter import (
    DEFAULT_MAX_PACKET,
    MAX_REPLY_LENGTH,
    SMFI_CURR_ACTS,
    SMFI_CURR_PROT,
    SMFIA,
    SMFIC,
    SMFIF,
    SMFIM,
    SMFIP,
    SMFIR,
    Abort,
    Accept,
    AddHeader,
    Body,
    ChangeHeader,
    Command,
    CommandDecoder,
    Connect,
    Continue,
    Data,
    DefineMacro,
    Discard,
    EndOfHeaders,
    EndOfMessage,
    FilterNeeds,
    FilterSession,
    Header,
    Helo,
    InsertHeader,
    Mail,
    MilterDecoder,
    MilterEncodingError,
    MilterProtocolError,
    MilterUsageError,
    NegotiationError,
    NegotiationReply,
    OptionNegotiation,
    OtherResponse,
    Packet,
    Progress,
    Quarantine,
    Quit,
    QuitNewConnection,
    Rcpt,
    Reject,
    ReplyCode,
    Response,
    ResponseDecoder,
    Skip,
    Step,
    Tempfail,
    UnknownCommand,
    UnknownSmtpCommand,
    encode_command,
    encode_packet,
    encode_response,
    negotiate,
)

POSTFIX_OFFER = OptionNegotiation(6, SMFIF(0x1FF), SMFIP(0x1FFFFF))
"""Postfix milter8.c with `milter_protocol = 6`: every action, MILTER8_V6_PROTO_MASK."""
SENDMAIL_OFFER = OptionNegotiation(6, SMFI_CURR_ACTS, SMFI_CURR_PROT)
"""Sendmail 8.14+ milter_negotiate(): SMFI_PROT_VERSION, SMFI_CURR_ACTS, SMFI_CURR_PROT."""
SENDMAIL_8_14_0_OFFER = OptionNegotiation(6, SMFIF(0xFF), SMFI_CURR_PROT)
"""Early 8.14 mfdef.h had SMFI_CURR_ACTS 0xFF: no SMFIF_SETSYMLIST."""
POSTFIX_V2_OFFER = OptionNegotiation(2, SMFIF(0x1FF), SMFIP(0x7F))
"""Postfix with `milter_protocol = 2`: MILTER8_V2_PROTO_MASK, no no-reply flags."""

SENDER_AT_MAIL = FilterNeeds.for_verification(at_recipient=False)


def frame(code: str, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + code.encode() + data


def feed_in_pieces(
    decoder: CommandDecoder | ResponseDecoder, data: bytes, cuts: list[int]
) -> list[Command | Response]:
    out: list[Command | Response] = []
    start = 0
    for point in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        out.extend(decoder.feed(data[start:point]))
        start = point
    return out


# --- strategies -------------------------------------------------------------------

uint32 = st.integers(0, 0xFFFF_FFFF)
c_strings = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=30)
raw_strings = (
    st.binary(max_size=30)
    .filter(lambda b: b"\0" not in b)
    .map(lambda b: b.decode("utf-8", errors="surrogateescape"))
)
strings = c_strings | raw_strings
printable = st.text(st.sampled_from([chr(c) for c in range(0x20, 0x7F)] + ["\t"]), max_size=60)

ports = st.integers(0, 0xFFFF)
connects = st.one_of(
    st.builds(Connect, strings, st.just(SMFIA.UNKNOWN)),
    st.builds(Connect, strings, st.just(SMFIA.UNIX), st.just(0), strings),
    st.builds(Connect, strings, st.just(SMFIA.INET), ports, st.ip_addresses(v=4).map(str)),
    st.builds(Connect, strings, st.just(SMFIA.INET6), ports, st.ip_addresses(v=6).map(str)),
)
macro_commands = st.sampled_from(list(SMFIC)) | st.integers(0, 0xFF)
known_command_bytes = {int(code) for code in SMFIC}
commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(OptionNegotiation, uint32, uint32.map(SMFIF), uint32.map(SMFIP)),
    st.builds(
        DefineMacro,
        macro_commands,
        st.lists(st.tuples(strings, strings), max_size=5).map(tuple),
    ),
    connects,
    st.builds(Helo, strings),
    st.builds(Mail, st.lists(strings, min_size=1, max_size=4).map(tuple)),
    st.builds(Rcpt, st.lists(strings, min_size=1, max_size=4).map(tuple)),
    st.builds(Header, strings, strings),
    st.builds(Body, st.binary(max_size=200)),
    st.builds(EndOfMessage, st.binary(max_size=50)),
    st.builds(UnknownSmtpCommand, strings),
    st.sampled_from([Data(), EndOfHeaders(), Abort(), Quit(), QuitNewConnection()]),
    st.builds(
        UnknownCommand,
        st.integers(0, 0xFF).filter(lambda c: c not in known_command_bytes),
        st.binary(max_size=40),
    ),
)


def _reply_codes(code: int) -> st.SearchStrategy[ReplyCode]:
    enhanced = st.none() | st.builds(
        lambda a, b: f"{code // 100}.{a}.{b}", st.integers(0, 999), st.integers(0, 999)
    )
    return st.builds(ReplyCode, st.just(code), enhanced, printable).filter(_sendable)


def _sendable(reply: ReplyCode) -> bool:
    try:
        encode_response(reply)
    except MilterEncodingError:
        return False
    return True


header_names = st.text(
    st.sampled_from([chr(c) for c in range(0x21, 0x7F) if chr(c) != ":"]), min_size=1, max_size=20
)
# Lone surrogates cannot be sent (see the test below); bytes a peer sent that were not UTF-8
# come back as surrogateescape characters and must survive the round trip.
header_values = st.text(
    st.one_of(st.characters(exclude_categories=["Cs"], exclude_characters="\0\r\n"),
              st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF)),
    max_size=40,
)
index_any = st.integers(0, 0x7FFF_FFFF)
responses: st.SearchStrategy[Response] = st.one_of(
    st.builds(
        NegotiationReply,
        uint32,
        uint32.map(SMFIF),
        uint32.map(SMFIP),
        st.lists(st.tuples(st.sampled_from(list(SMFIM)) | uint32, strings), max_size=4).map(tuple),
    ),
    st.sampled_from([Continue(), Accept(), Reject(), Tempfail(), Discard(), Progress(), Skip()]),
    st.integers(400, 599).flatmap(_reply_codes),
    st.builds(AddHeader, header_names, header_values),
    st.builds(InsertHeader, index_any, header_names, header_values),
    st.builds(ChangeHeader, index_any.filter(bool), header_names, header_values),
    st.builds(Quarantine, printable.filter(bool)),
    st.builds(
        OtherResponse,
        st.sampled_from([SMFIR.ADDRCPT, SMFIR.DELRCPT, SMFIR.SHUTDOWN, SMFIR.REPLBODY]),
        st.binary(max_size=30),
    ),
)


# --- framing ----------------------------------------------------------------------


def test_decoder_yields_packets_from_any_split() -> None:
    data = frame("O", bytes(12)) + frame("T") + frame("B", b"x" * 70_000)
    decoder = MilterDecoder()
    packets = [packet for i in range(len(data)) for packet in decoder.feed(data[i : i + 1])]
    assert packets == [
        Packet(SMFIC.OPTNEG, bytes(12)),
        Packet(SMFIC.DATA, b""),
        Packet(SMFIC.BODY, b"x" * 70_000),
    ]
    assert decoder.pending == 0


def test_partial_packet_is_pending() -> None:
    decoder = MilterDecoder()
    assert decoder.feed(frame("H", b"mx\0")[:-1]) == []
    assert decoder.pending == 7
    assert decoder.feed(b"\0") == [Packet(SMFIC.HELO, b"mx\0")]


def test_packet_at_the_limit_is_accepted() -> None:
    decoder = MilterDecoder(max_packet=100)
    assert decoder.feed(frame("B", b"x" * 99)) == [Packet(SMFIC.BODY, b"x" * 99)]


def test_oversized_length_is_refused_before_its_data_arrives() -> None:
    decoder = MilterDecoder(max_packet=100)
    with pytest.raises(MilterProtocolError, match="101 bytes exceeds the 100-byte limit"):
        decoder.feed(struct.pack(">I", 101))
    assert decoder.pending == 0


def test_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_PACKET == 1 << 20
    with pytest.raises(MilterProtocolError, match="exceeds"):
        MilterDecoder().feed(struct.pack(">I", (1 << 20) + 1) + b"B")


def test_garbled_length_is_refused() -> None:
    # An HTTP or SMTP client talking to the milter port: "GET " is a 1.2 GB length.
    with pytest.raises(MilterProtocolError, match="exceeds") as raised:
        CommandDecoder().feed(b"GET / HTTP/1.1\r\n")
    assert "\n" not in str(raised.value)


def test_zero_length_is_refused() -> None:
    with pytest.raises(MilterProtocolError, match="length 0"):
        MilterDecoder().feed(bytes(4))


def test_decoder_stays_failed_after_an_error() -> None:
    decoder = CommandDecoder()
    with pytest.raises(MilterProtocolError):
        decoder.feed(frame("H", b"no terminator") + frame("T"))
    with pytest.raises(MilterProtocolError):
        decoder.feed(frame("T"))


# --- byte-exact packets (mfdef.h values) --------------------------------------------


def test_optneg_packet_layout() -> None:
    # length 13 = 'O' + version + actions + protocol, all big-endian 32-bit
    assert encode_command(POSTFIX_OFFER) == bytes.fromhex("0000000d 4f 00000006 000001ff 001fffff")


def test_negotiation_reply_with_a_macro_list() -> None:
    reply = NegotiationReply(
        6, SMFIF.ADDHDRS | SMFIF.SETSYMLIST, SMFIP.NOBODY, ((SMFIM.ENVFROM, "{auth_authen} i"),)
    )
    assert encode_response(reply) == (
        bytes.fromhex("00000021 4f 00000006 00000101 00000010 00000002") + b"{auth_authen} i\0"
    )


def test_empty_responses_are_one_byte_packets() -> None:
    assert encode_response(Continue()) == b"\x00\x00\x00\x01c"
    assert encode_response(Accept()) == b"\x00\x00\x00\x01a"
    assert encode_response(Reject()) == b"\x00\x00\x00\x01r"
    assert encode_response(Tempfail()) == b"\x00\x00\x00\x01t"
    assert encode_response(Discard()) == b"\x00\x00\x00\x01d"
    assert encode_response(Progress()) == b"\x00\x00\x00\x01p"
    assert encode_response(Skip()) == b"\x00\x00\x00\x01s"


def test_replycode_packet() -> None:
    packet = encode_response(ReplyCode(550, "5.1.7", "Sender address rejected"))
    assert packet == frame("y", b"550 5.1.7 Sender address rejected\0")


def test_connect_packet_as_postfix_sends_it() -> None:
    packet = encode_command(Connect("mail.example.com", SMFIA.INET, 25, "192.0.2.1"))
    assert packet == frame("C", b"mail.example.com\0" + b"4" + b"\x00\x19" + b"192.0.2.1\0")


def test_unknown_family_carries_no_port_or_address() -> None:
    assert encode_command(Connect("[192.0.2.1]", SMFIA.UNKNOWN)) == frame("C", b"[192.0.2.1]\0U")


def test_macro_packet() -> None:
    macros = DefineMacro(SMFIC.MAIL, (("{auth_authen}", "alice"), ("i", "4XyZ1")))
    assert encode_command(macros) == frame("D", b"M{auth_authen}\0alice\0i\0" + b"4XyZ1\0")


def test_header_change_packets() -> None:
    assert encode_response(ChangeHeader(2, "X-CBV", "")) == frame("m", b"\x00\x00\x00\x02X-CBV\0\0")
    assert encode_response(InsertHeader(0, "X-CBV", "fail")) == frame(
        "i", b"\x00\x00\x00\x00X-CBV\0fail\0"
    )
    assert encode_response(AddHeader("X-CBV", "pass")) == frame("h", b"X-CBV\0pass\0")
    assert encode_response(Quarantine("sender failed verification")) == frame(
        "q", b"sender failed verification\0"
    )


# --- commands -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        POSTFIX_OFFER,
        DefineMacro(SMFIC.CONNECT, (("j", "mx.example.net"), ("{daemon_name}", "smtpd"))),
        DefineMacro(SMFIC.RCPT),
        Connect("mail.example.com", SMFIA.INET, 41_234, "192.0.2.1"),
        Connect("mail.example.com", SMFIA.INET6, 25, "2001:db8::1"),
        Connect("localhost", SMFIA.UNIX, 0, "/var/run/smtp.sock"),
        Connect("[192.0.2.1]", SMFIA.UNKNOWN),
        Helo("client.example.org"),
        Mail(("<a@example.org>", "SIZE=1000", "BODY=8BITMIME")),
        Mail(("<>",)),
        Rcpt(("<b@example.net>", "NOTIFY=NEVER")),
        Header("Subject", "hello"),
        Header("X-Empty", ""),
        EndOfHeaders(),
        Body(b"line\r\n" * 10),
        EndOfMessage(),
        EndOfMessage(b"last chunk"),
        Data(),
        UnknownSmtpCommand("XYZZY plugh"),
        Abort(),
        Quit(),
        QuitNewConnection(),
        UnknownCommand(ord("Z"), b"future"),
    ],
)
def test_command_round_trip(command: Command) -> None:
    assert CommandDecoder().feed(encode_command(command)) == [command]


@given(st.lists(commands, min_size=1, max_size=8), st.lists(st.integers(0, 5000), max_size=10))
def test_any_split_of_a_command_stream_gives_the_same_commands(
    sent: list[Command], cuts: list[int]
) -> None:
    data = b"".join(encode_command(command) for command in sent)
    assert feed_in_pieces(CommandDecoder(), data, cuts) == sent


@given(st.binary(max_size=2000), st.lists(st.integers(0, 2000), max_size=8))
def test_arbitrary_bytes_never_raise_anything_but_protocol_errors(
    data: bytes, cuts: list[int]
) -> None:
    for decoder in (CommandDecoder(max_packet=512), ResponseDecoder(max_packet=512)):
        with contextlib.suppress(MilterProtocolError):
            feed_in_pieces(decoder, data, cuts)


@given(st.integers(0, 0xFF), st.binary(max_size=200))
def test_any_packet_decodes_or_is_a_protocol_error(code: int, data: bytes) -> None:
    for decoder in (CommandDecoder(), ResponseDecoder()):
        with contextlib.suppress(MilterProtocolError):
            decoder.feed(encode_packet(code, data))


def test_sendmail_ipv6_tag_is_dropped() -> None:
    packet = frame("C", b"mx.example\0" + b"6" + b"\x00\x19" + b"IPv6:2001:db8::25\0")
    assert CommandDecoder().feed(packet) == [Connect("mx.example", SMFIA.INET6, 25, "2001:db8::25")]


def test_optneg_ignores_trailing_data_as_libmilter_does() -> None:
    packet = frame("O", bytes.fromhex("00000006 000001ff 001fffff") + b"future")
    assert CommandDecoder().feed(packet) == [POSTFIX_OFFER]


def test_unknown_macro_stage_is_kept_raw() -> None:
    assert CommandDecoder().feed(frame("D", b"Z")) == [DefineMacro(ord("Z"))]


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (frame("H", b"no terminator"), "HELO: string without its terminating NUL"),
        (frame("H", b"two\0strings\0"), "HELO: 8 unexpected trailing bytes"),
        (frame("C", b"host\0X\x00\x19192.0.2.1\0"), "unknown address family byte 0x58"),
        (frame("C", b"host\0"), "truncated before a byte"),
        (frame("C", b"host\x004\x00"), "truncated before a 2-byte port"),
        (frame("C", b"host\x004\x00\x19192.0.2.1"), "terminating NUL"),
        (frame("C", b"host\x004\x00\x19not-an-ip\0"), "not an address of family 4"),
        (frame("C", b"host\x006\x00\x19192.0.2.1\0"), "not an address of family 6"),
        (frame("C", b"host\0U\x00\x19"), "unexpected trailing bytes"),
        (frame("D", b""), "truncated before a byte"),
        (frame("D", b"Mi\0"), "macro 'i' has no value"),
        (frame("M", b""), "MAIL: no address"),
        (frame("R", b"<a@b>"), "RCPT: string without its terminating NUL"),
        (frame("L", b"Subject\0"), "header: string without its terminating NUL"),
        (frame("O", bytes(11)), "option negotiation: truncated"),
        (frame("T", b"x"), "DATA: 1 bytes of data where none belong"),
        (frame("Q", b"bye"), "QUIT: 3 bytes"),
    ],
)
def test_malformed_commands_are_protocol_errors(packet: bytes, message: str) -> None:
    with pytest.raises(MilterProtocolError, match="malformed .*" + message):
        CommandDecoder().feed(packet)


def test_mail_exposes_sender_and_parameters() -> None:
    mail = Mail(("<a@example.org>", "SIZE=10"))
    assert mail.sender == "<a@example.org>"
    assert mail.parameters == ("SIZE=10",)
    rcpt = Rcpt(("<b@example.net>",))
    assert (rcpt.recipient, rcpt.parameters) == ("<b@example.net>", ())


@pytest.mark.parametrize(
    "command",
    [
        Helo("a\0b"),
        Mail(()),
        Connect("h", SMFIA.INET, 25, "2001:db8::1"),
        Connect("h", SMFIA.INET, 70_000, "192.0.2.1"),
        Connect("h", SMFIA.UNKNOWN, 25),
        DefineMacro(256),
        OptionNegotiation(-1, SMFIF(0), SMFIP(0)),
    ],
)
def test_command_encoder_refuses_what_cannot_be_framed(command: Command) -> None:
    with pytest.raises(MilterEncodingError):
        encode_command(command)


# --- responses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        NegotiationReply(6, SMFIF(0), SMFIP.NOBODY | SMFIP.NR_CONN),
        NegotiationReply(6, SMFIF.SETSYMLIST, SMFIP(0), ((SMFIM.CONNECT, "j _"), (9, "x"))),
        Continue(),
        Accept(),
        Reject(),
        Tempfail(),
        Discard(),
        Progress(),
        Skip(),
        ReplyCode(550, "5.1.7", "Sender address rejected: mailbox unknown"),
        ReplyCode(451, "4.4.3", "Sender address verification in progress"),
        ReplyCode(554, None, "no enhanced code"),
        ReplyCode(550, None, ""),
        ReplyCode(550, "5.1.1", ""),
        ReplyCode(550, None, "4.1.1 looks enhanced but is of another class"),
        ReplyCode(450, None, "100% sure, %s stays literal"),
        AddHeader("X-CBV-Result", "pass (accepted)"),
        AddHeader("X-Folded", "first\n\tsecond"),
        InsertHeader(0, "X-CBV-Result", "fail"),
        ChangeHeader(1, "X-CBV-Result", ""),
        Quarantine("sender failed callback verification"),
        OtherResponse(SMFIR.SHUTDOWN),
        OtherResponse(ord("?"), b"raw"),
    ],
)
def test_response_round_trip(response: Response) -> None:
    assert ResponseDecoder().feed(encode_response(response)) == [response]


@given(st.lists(responses, min_size=1, max_size=8), st.lists(st.integers(0, 3000), max_size=10))
def test_any_split_of_a_response_stream_gives_the_same_responses(
    sent: list[Response], cuts: list[int]
) -> None:
    data = b"".join(encode_response(response) for response in sent)
    assert feed_in_pieces(ResponseDecoder(), data, cuts) == sent


def test_percent_is_doubled_on_the_wire() -> None:
    packet = encode_response(ReplyCode(550, "5.7.1", "100% spam"))
    assert packet == frame("y", b"550 5.7.1 100%% spam\0")


def test_lone_percent_is_dropped_as_postfix_does() -> None:
    assert ResponseDecoder().feed(frame("y", b"550 5.7.1 50% off\0")) == [
        ReplyCode(550, "5.7.1", "50 off")
    ]


def test_reply_line_property_is_what_the_client_sees() -> None:
    assert ReplyCode(550, "5.1.7", "no such user").line == "550 5.1.7 no such user"
    assert ReplyCode(450, None, "later").line == "450 later"


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (ReplyCode(550, "5.1.7", "bad\r\nDATA"), "contains CR"),
        (ReplyCode(550, "5.1.7", "bad\nline"), "contains LF"),
        (ReplyCode(550, "5.1.7", "bad\0"), "contains NUL"),
        (ReplyCode(550, "5.1.7", "caf\u00e9"), "contains U\\+00E9"),
        (ReplyCode(250, None, "ok"), "not 4xx or 5xx"),
        (ReplyCode(600, None, "no"), "not 4xx or 5xx"),
        (ReplyCode(550, "4.1.7", "wrong class"), "does not fit reply code 550"),
        (ReplyCode(550, "5.1", "too short"), "does not fit"),
        (ReplyCode(550, None, "5.1.1 user unknown"), "pass it as `enhanced`"),
        (ReplyCode(550, "5.1.7", "x" * MAX_REPLY_LENGTH), "exceeds the 980-character limit"),
        (AddHeader("X Bad", "v"), "header name"),
        (AddHeader("X-Bad:", "v"), "header name"),
        (AddHeader("", "v"), "header name"),
        (AddHeader("X-Bad", "a\r\nb"), "never CR"),
        (AddHeader("X-Bad", "a\nb"), "only to fold"),
        (AddHeader("X-Bad", "a\n"), "only to fold"),
        (AddHeader("X-Bad", "a\0b"), "contains NUL"),
        (InsertHeader(-1, "X-Bad", "v"), "out of range"),
        (ChangeHeader(0, "X-Bad", "v"), "out of range"),
        (ChangeHeader(1 << 31, "X-Bad", "v"), "out of range"),
        (Quarantine(""), "needs a reason"),
        (Quarantine("held\r\n"), "contains CR"),
    ],
)
def test_response_encoder_refuses_what_an_mta_would_misread(
    response: Response, message: str
) -> None:
    with pytest.raises(MilterEncodingError, match=message):
        encode_response(response)


@pytest.mark.parametrize(
    ("packet", "message"),
    [
        (frame("y", b"550 5.1.7 no terminator"), "terminating NUL"),
        (frame("y", b"250 ok\0"), "does not start with a 4xx or 5xx code"),
        (frame("y", b"550-first\r\n550 second\0"), "multi-line"),
        (frame("c", b"x"), "CONTINUE: 1 bytes of data where none belong"),
        (frame("O", bytes(12) + b"\x00\x00"), "truncated before a 4-byte number"),
        (frame("O", bytes(16) + b"no NUL"), "terminating NUL"),
        (frame("m", b"\x00\x00\x00\x01X\0"), "terminating NUL"),
        (frame("q", b""), "terminating NUL"),
    ],
)
def test_malformed_responses_are_protocol_errors(packet: bytes, message: str) -> None:
    with pytest.raises(MilterProtocolError, match=message):
        ResponseDecoder().feed(packet)


# --- negotiation --------------------------------------------------------------------


def test_postfix_offer_for_a_sender_check_at_mail() -> None:
    reply = negotiate(SENDER_AT_MAIL, POSTFIX_OFFER).reply
    assert reply.version == 6
    assert reply.actions == SMFIF(0)
    assert reply.protocol == (
        SMFIP.NOHELO
        | SMFIP.NORCPT
        | SMFIP.NODATA
        | SMFIP.NOUNKNOWN
        | SMFIP.NOHDRS
        | SMFIP.NOEOH
        | SMFIP.NOBODY
        | SMFIP.NR_CONN
    )
    assert reply.symbol_lists == ()


def test_sendmail_offer_gives_the_same_answer() -> None:
    assert negotiate(SENDER_AT_MAIL, SENDMAIL_OFFER).reply == (
        negotiate(SENDER_AT_MAIL, POSTFIX_OFFER).reply
    )


def test_check_at_recipient_observes_mail_and_decides_rcpt() -> None:
    needs = FilterNeeds.for_verification(at_recipient=True)
    negotiated = negotiate(needs, POSTFIX_OFFER)
    protocol = negotiated.reply.protocol
    assert SMFIP.NOMAIL not in protocol and SMFIP.NR_MAIL in protocol
    assert SMFIP.NORCPT not in protocol and SMFIP.NR_RCPT not in protocol
    assert negotiated.expects_reply(Step.RCPT)
    assert not negotiated.expects_reply(Step.MAIL)


def test_header_actions_are_asked_for_only_when_configured() -> None:
    needs = FilterNeeds.for_verification(
        at_recipient=False, add_headers=True, change_headers=True, quarantine=True
    )
    reply = negotiate(needs, POSTFIX_OFFER).reply
    assert reply.actions == SMFIF.ADDHDRS | SMFIF.CHGHDRS | SMFIF.QUARANTINE
    # Changing a header means finding it: headers come, unanswered; EOH and body stay off.
    assert SMFIP.NOHDRS not in reply.protocol and SMFIP.NR_HDR in reply.protocol
    assert SMFIP.NOEOH in reply.protocol and SMFIP.NOBODY in reply.protocol


def test_adding_a_header_needs_no_headers() -> None:
    needs = FilterNeeds.for_verification(at_recipient=False, add_headers=True)
    reply = negotiate(needs, POSTFIX_OFFER).reply
    assert reply.actions == SMFIF.ADDHDRS
    assert SMFIP.NOHDRS | SMFIP.NOEOH in reply.protocol


def test_missing_action_is_named() -> None:
    needs = FilterNeeds.for_verification(at_recipient=False, quarantine=True)
    offer = OptionNegotiation(6, SMFIF.ADDHDRS | SMFIF.CHGHDRS, SMFI_CURR_PROT)
    with pytest.raises(NegotiationError, match="SMFIF_QUARANTINE") as raised:
        negotiate(needs, offer)
    assert raised.value.missing_actions == SMFIF.QUARANTINE
    assert isinstance(raised.value, MilterProtocolError)


def test_version_one_mta_is_refused() -> None:
    with pytest.raises(NegotiationError, match="version 1"):
        negotiate(SENDER_AT_MAIL, OptionNegotiation(1, SMFIF(0x0F), SMFIP(0x3F)))


def test_newer_mta_gets_version_six() -> None:
    reply = negotiate(SENDER_AT_MAIL, OptionNegotiation(7, SMFIF(0x1FF), SMFIP(0x1FFFFF))).reply
    assert reply.version == 6


def test_old_postfix_cannot_skip_replies() -> None:
    negotiated = negotiate(SENDER_AT_MAIL, POSTFIX_V2_OFFER)
    assert negotiated.reply.version == 2
    # Every unneeded step is left out; CONNECT is watched but must still be answered.
    assert negotiated.reply.protocol == (
        SMFIP.NOHELO | SMFIP.NORCPT | SMFIP.NOHDRS | SMFIP.NOEOH | SMFIP.NOBODY
    )
    assert negotiated.expects_reply(Step.CONNECT)


def test_zero_offer_means_version_one_sets() -> None:
    negotiated = negotiate(SENDER_AT_MAIL, OptionNegotiation(2, SMFIF(0), SMFIP(0)))
    # SMFI_V1_PROT is 0x3F: a version 1 MTA cannot leave out EOH.
    assert negotiated.reply.protocol == SMFIP.NOHELO | SMFIP.NORCPT | SMFIP.NOHDRS | SMFIP.NOBODY
    with pytest.raises(NegotiationError, match="SMFIF_QUARANTINE"):
        negotiate(
            FilterNeeds.for_verification(at_recipient=False, quarantine=True),
            OptionNegotiation(2, SMFIF(0), SMFIP(0)),
        )


def test_unneeded_step_that_cannot_be_left_out_goes_unanswered() -> None:
    offer = OptionNegotiation(6, SMFI_CURR_ACTS, SMFI_CURR_PROT & ~SMFIP.NODATA)
    negotiated = negotiate(SENDER_AT_MAIL, offer)
    assert SMFIP.NODATA not in negotiated.reply.protocol
    assert not negotiated.expects_reply(Step.DATA)


def test_flags_never_exceed_the_offer() -> None:
    needs = FilterNeeds.for_verification(at_recipient=True, change_headers=True)
    for offer in (POSTFIX_OFFER, SENDMAIL_8_14_0_OFFER, POSTFIX_V2_OFFER):
        reply = negotiate(needs, offer).reply
        assert int(reply.protocol) & ~int(offer.protocol) == 0
        assert int(reply.actions) & ~int(offer.actions) == 0


def test_macro_lists_need_setsymlist() -> None:
    needs = FilterNeeds(
        decide=frozenset({Step.MAIL}),
        macros={SMFIM.ENVFROM: "{auth_authen} i", SMFIM.CONNECT: "{client_addr}"},
    )
    reply = negotiate(needs, POSTFIX_OFFER).reply
    assert reply.actions == SMFIF.SETSYMLIST
    assert reply.symbol_lists == (
        (SMFIM.CONNECT, "{client_addr}"),
        (SMFIM.ENVFROM, "{auth_authen} i"),
    )
    old = negotiate(needs, SENDMAIL_8_14_0_OFFER).reply
    assert old.actions == SMFIF(0)
    assert old.symbol_lists == ()


def test_rejected_recipients_are_asked_for_or_refused() -> None:
    needs = FilterNeeds(decide=frozenset({Step.RCPT}), rejected_recipients=True)
    assert SMFIP.RCPT_REJ in negotiate(needs, POSTFIX_OFFER).reply.protocol
    with pytest.raises(NegotiationError, match="RCPT_REJ"):
        negotiate(needs, POSTFIX_V2_OFFER)


def test_a_step_cannot_be_both_decided_and_observed() -> None:
    with pytest.raises(ValueError, match="MAIL"):
        FilterNeeds(decide=frozenset({Step.MAIL}), observe=frozenset({Step.MAIL}))


# --- session ------------------------------------------------------------------------


def postfix_session(needs: FilterNeeds = SENDER_AT_MAIL) -> FilterSession:
    session = FilterSession(needs)
    assert session.receive(POSTFIX_OFFER)
    assert session.negotiated is not None
    session.answer(session.negotiated.reply)
    return session


def test_sender_check_conversation_through_bytes() -> None:
    """Play Postfix: only MAIL and the end of message wait for an answer."""
    session = FilterSession(SENDER_AT_MAIL)
    decoder = CommandDecoder()
    mta_reads = ResponseDecoder()

    def mta_sends(*commands: Command) -> list[Response]:
        answers = b""
        for command in decoder.feed(b"".join(encode_command(c) for c in commands)):
            if session.receive(command):
                if isinstance(command, OptionNegotiation):
                    assert session.negotiated is not None
                    answers += session.answer(session.negotiated.reply)
                elif isinstance(command, Mail):
                    assert session.macro("{auth_authen}") is None
                    assert session.macro("i") == "4XyZ1"
                    answers += session.answer(ReplyCode(550, "5.1.7", f"{command.sender} unknown"))
                else:
                    answers += session.answer(Continue())
        return mta_reads.feed(answers)

    [negotiation] = mta_sends(POSTFIX_OFFER)
    assert isinstance(negotiation, NegotiationReply)
    assert SMFIP.NR_CONN in negotiation.protocol
    assert (
        mta_sends(
            DefineMacro(SMFIC.CONNECT, (("j", "mx.example.net"),)),
            Connect("client.example.org", SMFIA.INET, 40_000, "192.0.2.7"),
        )
        == []
    )
    assert session.macro("{j}") == "mx.example.net"
    assert mta_sends(DefineMacro(SMFIC.MAIL, (("i", "4XyZ1"),)), Mail(("<a@example.org>",))) == [
        ReplyCode(550, "5.1.7", "<a@example.org> unknown")
    ]
    assert mta_sends(Abort(), Quit()) == []
    assert session.closed


def test_answer_nobody_asked_for_is_refused() -> None:
    session = postfix_session()
    assert not session.receive(Connect("c", SMFIA.UNKNOWN))
    assert session.awaiting is None
    with pytest.raises(MilterUsageError, match="no milter command awaits"):
        session.answer(Continue())


def test_macros_aborts_and_quits_are_never_answered() -> None:
    session = postfix_session()
    assert not session.receive(DefineMacro(SMFIC.HELO, (("x", "y"),)))
    assert not session.receive(Abort())
    assert not session.receive(Quit())


def test_steps_left_out_but_sent_anyway_are_answered() -> None:
    # The MTA sends HELO although NOHELO was negotiated: it waits, so it gets CONTINUE.
    session = postfix_session()
    assert session.receive(Helo("client.example.org"))
    assert session.answer(Continue()) == b"\x00\x00\x00\x01c"


def test_old_mta_waits_for_every_step() -> None:
    session = FilterSession(SENDER_AT_MAIL)
    session.receive(POSTFIX_V2_OFFER)
    assert session.negotiated is not None
    session.answer(session.negotiated.reply)
    assert session.receive(Connect("c", SMFIA.UNKNOWN))
    session.answer(Continue())


def test_end_of_message_and_unknown_commands_always_wait() -> None:
    session = postfix_session()
    assert session.receive(EndOfMessage())
    session.answer(Continue())
    assert session.receive(UnknownCommand(ord("Z")))
    session.answer(Continue())


def test_receiving_while_an_answer_is_owed_is_refused() -> None:
    session = postfix_session()
    session.receive(Mail(("<a@b>",)))
    with pytest.raises(MilterUsageError, match="Mail is still unanswered"):
        session.receive(Rcpt(("<c@d>",)))


def test_commands_before_negotiation_are_a_protocol_error() -> None:
    with pytest.raises(MilterProtocolError, match="before option negotiation"):
        FilterSession(SENDER_AT_MAIL).receive(Mail(("<a@b>",)))


def test_second_negotiation_is_a_protocol_error() -> None:
    session = postfix_session()
    with pytest.raises(MilterProtocolError, match="second"):
        session.receive(POSTFIX_OFFER)


def test_commands_after_quit_are_a_protocol_error() -> None:
    session = postfix_session()
    session.receive(Quit())
    with pytest.raises(MilterProtocolError, match="after QUIT"):
        session.receive(Connect("c", SMFIA.UNKNOWN))


def test_negotiation_failure_surfaces_from_receive() -> None:
    needs = FilterNeeds.for_verification(at_recipient=False, quarantine=True)
    with pytest.raises(NegotiationError):
        FilterSession(needs).receive(OptionNegotiation(6, SMFIF.ADDHDRS, SMFI_CURR_PROT))


def test_quit_new_connection_starts_over_without_negotiation() -> None:
    session = postfix_session()
    session.receive(DefineMacro(SMFIC.CONNECT, (("j", "first"),)))
    assert not session.receive(QuitNewConnection())
    assert session.macro("j") is None
    assert not session.closed
    assert not session.receive(Connect("next", SMFIA.UNKNOWN))


def test_macro_names_follow_smfi_getsymval() -> None:
    session = postfix_session()
    session.receive(DefineMacro(SMFIC.CONNECT, (("{j}", "mx"), ("{daemon_name}", "smtpd"))))
    session.receive(DefineMacro(SMFIC.MAIL, (("i", "Q1"), ("{mail_addr}", "a@b"))))
    assert session.macro("j") == "mx"
    assert session.macro("{i}") == "Q1"
    assert session.macro("{daemon_name}") == "smtpd"
    assert session.macro("daemon_name") is None  # only one-letter names lose their braces
    assert session.macro("{nothing}") is None


def test_new_transaction_drops_the_macros_of_the_last_one() -> None:
    needs = FilterNeeds.for_verification(at_recipient=True)
    session = postfix_session(needs)
    session.receive(DefineMacro(SMFIC.MAIL, (("{mail_addr}", "first@example.org"),)))
    session.receive(Mail(("<first@example.org>",)))
    session.receive(DefineMacro(SMFIC.RCPT, (("{rcpt_addr}", "r1@example.net"),)))
    session.receive(Rcpt(("<r1@example.net>",)))
    assert session.macro("{rcpt_addr}") == "r1@example.net"
    session.answer(Continue())
    session.receive(DefineMacro(SMFIC.MAIL, (("{mail_addr}", "second@example.org"),)))
    session.receive(Mail(("<second@example.org>",)))
    assert session.macro("{mail_addr}") == "second@example.org"
    assert session.macro("{rcpt_addr}") is None


def test_header_changes_only_at_end_of_message_and_only_when_negotiated() -> None:
    needs = FilterNeeds.for_verification(at_recipient=False, add_headers=True)
    session = postfix_session(needs)
    session.receive(Mail(("<a@b>",)))
    with pytest.raises(MilterUsageError, match="only at end of message"):
        session.answer(AddHeader("X-CBV", "pass"), Continue())
    session.answer(Continue())
    session.receive(EndOfMessage())
    with pytest.raises(MilterUsageError, match="Quarantine was not negotiated"):
        session.answer(Quarantine("held"), Continue())
    with pytest.raises(MilterUsageError, match="ChangeHeader was not negotiated"):
        session.answer(ChangeHeader(1, "X-CBV", ""), Continue())
    sent = session.answer(Progress(), AddHeader("X-CBV", "pass"), Continue())
    assert ResponseDecoder().feed(sent) == [Progress(), AddHeader("X-CBV", "pass"), Continue()]


def test_an_answer_ends_with_one_final_response() -> None:
    session = postfix_session()
    session.receive(Mail(("<a@b>",)))
    with pytest.raises(MilterUsageError, match="ends with one final response"):
        session.answer()
    with pytest.raises(MilterUsageError, match="ends with one final response"):
        session.answer(Progress())
    with pytest.raises(MilterUsageError, match="can only end an answer"):
        session.answer(Continue(), Reject())
    with pytest.raises(MilterUsageError, match="can only end an answer"):
        session.answer(OtherResponse(SMFIR.SHUTDOWN), Continue())
    assert session.answer(Tempfail()) == b"\x00\x00\x00\x01t"


def test_discard_and_skip_are_refused_where_they_do_not_apply() -> None:
    session = FilterSession(SENDER_AT_MAIL)
    session.receive(POSTFIX_V2_OFFER)
    assert session.negotiated is not None
    session.answer(session.negotiated.reply)
    session.receive(Connect("c", SMFIA.UNKNOWN))
    with pytest.raises(MilterUsageError, match="DISCARD"):
        session.answer(Discard())
    with pytest.raises(MilterUsageError, match="SKIP"):
        session.answer(Skip())
    session.answer(Accept())


def test_negotiation_is_answered_by_a_negotiation_reply() -> None:
    session = FilterSession(SENDER_AT_MAIL)
    session.receive(POSTFIX_OFFER)
    with pytest.raises(MilterUsageError, match="one NegotiationReply"):
        session.answer(Continue())
    with pytest.raises(MilterUsageError, match="did not offer"):
        session.answer(NegotiationReply(6, SMFIF(0), SMFIP(0x0200_0000)))
    with pytest.raises(MilterUsageError, match="version 7"):
        session.answer(NegotiationReply(7, SMFIF(0), SMFIP(0)))


def test_a_hand_made_negotiation_reply_is_what_the_session_follows() -> None:
    session = FilterSession(SENDER_AT_MAIL)
    session.receive(POSTFIX_OFFER)
    session.answer(NegotiationReply(6, SMFIF(0), SMFIP.NR_MAIL))
    assert not session.receive(Mail(("<a@b>",)))
    assert session.receive(Connect("c", SMFIA.UNKNOWN))


def test_packets_are_framed_only_when_asked_for() -> None:
    decoder = MilterDecoder()
    decoder.receive(encode_packet(SMFIC.ABORT) * 3)
    assert decoder.pending == 15
    assert decoder.next_packet() == Packet(SMFIC.ABORT, b"")
    assert decoder.pending == 10
    assert len(list(iter(decoder.next_packet, None))) == 2


def test_a_header_value_with_a_lone_surrogate_is_an_encoding_error() -> None:
    with pytest.raises(MilterEncodingError, match="header value is not encodable"):
        encode_response(AddHeader("X-Cbv", "bad \ud800 text"))
