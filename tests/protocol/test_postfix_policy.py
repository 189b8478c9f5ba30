"""The Postfix policy codec: requests at any byte split, pipelined, malformed, oversized."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cbv.protocol.postfix_policy import (
    MalformedRequest,
    PolicyEvent,
    PolicyRequest,
    RequestParser,
    _preview,
    defer_if_permit_action,
    encode_action,
    external_address,
    hold_action,
    one_line,
    prepend_action,
    reply_action,
    warn_action,
)

# Exactly what Postfix 3.7 sends (PEERS.md), in its order.
POSTFIX_REQUEST = (
    b"request=smtpd_access_policy\n"
    b"protocol_state=RCPT\n"
    b"protocol_name=ESMTP\n"
    b"client_address=192.0.2.7\n"
    b"client_name=mail.sender.test\n"
    b"client_port=40312\n"
    b"reverse_client_name=mail.sender.test\n"
    b"server_address=127.0.0.1\n"
    b"server_port=25\n"
    b"helo_name=mail.sender.test\n"
    b"sender=alice@sender.test\n"
    b"recipient=bob@example.test\n"
    b"recipient_count=0\n"
    b"queue_id=\n"
    b"instance=1b2c.6553f1a2.3c4d5.0\n"
    b"size=0\n"
    b"etrn_domain=\n"
    b"stress=\n"
    b"sasl_method=\n"
    b"sasl_username=\n"
    b"sasl_sender=\n"
    b"ccert_subject=\n"
    b"ccert_issuer=\n"
    b"ccert_fingerprint=\n"
    b"ccert_pubkey_fingerprint=\n"
    b"encryption_protocol=TLSv1.3\n"
    b"encryption_cipher=TLS_AES_256_GCM_SHA384\n"
    b"encryption_keysize=256\n"
    b"policy_context=\n"
    b"\n"
)


def feed_in_chunks(data: bytes, cuts: list[int], parser: RequestParser | None = None
                   ) -> list[PolicyEvent]:
    parser = parser or RequestParser()
    events: list[PolicyEvent] = []
    start = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.feed(data[start:])
    return events


def test_a_postfix_request_gives_every_attribute() -> None:
    [request] = RequestParser().feed(POSTFIX_REQUEST)
    assert isinstance(request, PolicyRequest)
    assert request.request == "smtpd_access_policy"
    assert request.protocol_state == "RCPT"
    assert request.sender == "alice@sender.test"
    assert request.recipient == "bob@example.test"
    assert request.instance == "1b2c.6553f1a2.3c4d5.0"
    assert request.client_address == "192.0.2.7"
    assert request.sasl_username == ""
    assert request.get("encryption_cipher") == "TLS_AES_256_GCM_SHA384"
    assert len(request.attributes) == 29


def test_order_does_not_matter_and_unknown_attributes_are_kept_aside() -> None:
    data = b"sender=a@b.test\nfuture_attribute=x=y\nrequest=smtpd_access_policy\n\n"
    [request] = RequestParser().feed(data)
    assert isinstance(request, PolicyRequest)
    assert request.sender == "a@b.test"
    assert request.get("future_attribute") == "x=y"
    assert request.protocol_state == ""


def test_pipelined_requests_come_out_in_order() -> None:
    data = b"".join(b"sender=s%d@x.test\n\n" % n for n in range(50))
    events = RequestParser().feed(data)
    assert [e.sender for e in events if isinstance(e, PolicyRequest)] == [
        f"s{n}@x.test" for n in range(50)
    ]


def test_crlf_line_ends_are_accepted() -> None:
    data = b"sender=a@b.test\r\nrecipient=c@d.test\r\n\r\nsender=e@f.test\n\n"
    events = RequestParser().feed(data)
    assert [e.attributes for e in events if isinstance(e, PolicyRequest)] == [
        {"sender": "a@b.test", "recipient": "c@d.test"},
        {"sender": "e@f.test"},
    ]


def test_stray_empty_lines_are_no_requests() -> None:
    assert RequestParser().feed(b"\n\n\r\n\n") == []


def test_nothing_comes_out_before_the_empty_line() -> None:
    parser = RequestParser()
    assert parser.feed(b"sender=a@b.test\nrecipient=c@d.test\n") == []
    assert parser.feed(b"\n") == [
        PolicyRequest({"sender": "a@b.test", "recipient": "c@d.test"})
    ]


def test_a_line_without_equals_spoils_only_its_request() -> None:
    events = RequestParser().feed(b"sender=a@b.test\nhello\n\nsender=c@d.test\n\n")
    assert events == [
        MalformedRequest("not a name=value line: 'hello'"),
        PolicyRequest({"sender": "c@d.test"}),
    ]


def test_a_request_that_is_not_utf8_is_malformed() -> None:
    assert RequestParser().feed(b"sender=\xff\xfe@b.test\n\n") == [
        MalformedRequest("request is not UTF-8")
    ]


def test_utf8_addresses_pass_through() -> None:
    [request] = RequestParser().feed("sender=jös@bücher.test\n\n".encode())
    assert isinstance(request, PolicyRequest)
    assert request.sender == "jös@bücher.test"


def test_too_many_attributes() -> None:
    data = b"".join(b"a%d=1\n" % n for n in range(20)) + b"\n"
    assert RequestParser(max_attributes=10).feed(data) == [
        MalformedRequest("more than 10 attributes")
    ]


def test_an_endless_line_is_skipped_without_holding_it() -> None:
    parser = RequestParser(max_line=100, max_request=1000)
    assert parser.feed(b"sender=a@b.test\nccert_subject=") == []
    for _ in range(100):
        assert parser.feed(b"x" * 1000) == []
        assert parser.pending <= 3
    assert parser.feed(b"\nsize=1\n\nsender=c@d.test\n\n") == [
        MalformedRequest("line longer than 100 bytes"),
        PolicyRequest({"sender": "c@d.test"}),
    ]


def test_an_endless_request_is_skipped_without_holding_it() -> None:
    parser = RequestParser(max_line=100, max_request=1000)
    for n in range(500):
        assert parser.feed(b"a%d=1\n" % n) == []
    assert parser.pending <= 1000 + 100
    assert parser.feed(b"\nsender=c@d.test\n\n") == [
        MalformedRequest("request longer than 1000 bytes"),
        PolicyRequest({"sender": "c@d.test"}),
    ]


names = st.from_regex(r"[a-z_]{1,20}", fullmatch=True)
values = st.text(
    alphabet=st.characters(exclude_characters="\n\r", exclude_categories=["Cs"]),
    max_size=60,
)
requests = st.lists(st.dictionaries(names, values, min_size=1, max_size=8), min_size=1,
                    max_size=6)


def serialise(request: dict[str, str], crlf: bool) -> bytes:
    end = "\r\n" if crlf else "\n"
    return "".join(f"{k}={v}{end}" for k, v in request.items()).encode() + end.encode()


@given(requests, st.lists(st.integers(min_value=0, max_value=2000), max_size=30), st.booleans())
def test_any_split_gives_the_same_requests(
    batch: list[dict[str, str]], cuts: list[int], crlf: bool
) -> None:
    data = b"".join(serialise(r, crlf) for r in batch)
    events = feed_in_chunks(data, cuts)
    assert events == [PolicyRequest(r) for r in batch]


@given(
    st.lists(st.sampled_from([b"sender=a@b.test\n\n", b"bad line\n\n", b"x=" + b"y" * 300 + b"\n\n",
                              b"\xff=1\n\n", b"\n"]), max_size=12),
    st.lists(st.integers(min_value=0, max_value=4000), max_size=30),
)
def test_good_and_bad_requests_at_any_split_each_get_one_event(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    events = feed_in_chunks(data, cuts, RequestParser(max_line=100, max_request=1000))
    assert events == feed_in_chunks(data, [], RequestParser(max_line=100, max_request=1000))
    assert len(events) == sum(1 for p in pieces if p != b"\n")


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_garbage_never_raises_and_memory_stays_bounded(data: bytes, cuts: list[int]) -> None:
    parser = RequestParser(max_line=100, max_request=1000)
    feed_in_chunks(data, cuts, parser)
    assert parser.pending <= 1000 + 100 + 3000


def test_actions_are_encoded_as_one_attribute_and_an_empty_line() -> None:
    assert encode_action("DUNNO") == b"action=DUNNO\n\n"
    assert reply_action(550, "5.1.7", "undeliverable address") == "550 5.1.7 undeliverable address"
    assert reply_action(550, None, "no") == "550 no"
    assert defer_if_permit_action("4.1.7", "in progress") == "DEFER_IF_PERMIT 4.1.7 in progress"
    assert hold_action("held") == "HOLD held"
    assert prepend_action("X-CBV-Result", "pass") == "PREPEND X-CBV-Result: pass"
    assert warn_action("dry run") == "WARN dry run"


@given(st.text(max_size=600))
def test_no_text_can_break_out_of_the_action_line(text: str) -> None:
    encoded = encode_action(f"550 5.1.7 {text}")
    assert encoded.startswith(b"action=550 5.1.7")
    assert encoded.endswith(b"\n\n")
    assert b"\n" not in encoded[:-2]
    assert b"\r" not in encoded
    assert all(32 <= byte < 127 for byte in encoded[:-2])
    assert len(one_line(text)) <= 450


def test_addresses_in_postfix_internal_form_are_quoted_again() -> None:
    assert external_address("john doe@example.test") == '"john doe"@example.test'
    assert external_address('say "hi"@example.test') == '"say \\"hi\\""@example.test'
    assert external_address("a@b@example.test") == '"a@b"@example.test'
    assert external_address(".lead@example.test") == '".lead"@example.test'
    assert external_address("alice@example.test") == "alice@example.test"
    assert external_address("jös@bücher.test") == "jös@bücher.test"
    assert external_address("") == ""
    assert external_address("postmaster") == "postmaster"


def test_a_duplicated_attribute_makes_the_request_malformed() -> None:
    data = b"sender=a@b.test\nclient_address=192.0.2.7\nclient_address=127.0.0.1\n\n"
    assert RequestParser().feed(data) == [
        MalformedRequest("attribute given twice: 'client_address'")]


def test_requests_are_parsed_only_when_asked_for() -> None:
    parser = RequestParser()
    parser.receive(POSTFIX_REQUEST * 1000)
    assert parser.pending == len(POSTFIX_REQUEST) * 1000
    first = parser.next_event()
    assert isinstance(first, PolicyRequest)
    assert parser.pending == len(POSTFIX_REQUEST) * 999
    assert len(list(iter(parser.next_event, None))) == 999
    assert parser.pending == 0


def test_one_whole_request_read_alone_is_taken_as_it_is() -> None:
    parser = RequestParser()
    parser.receive(b"sender=a@b.test\n\n")
    parser.receive(b"sender=c@d.test\n\n")  # before the first was taken
    assert [e.sender for e in iter(parser.next_event, None)
            if isinstance(e, PolicyRequest)] == ["a@b.test", "c@d.test"]


def test_a_line_with_no_name_spoils_its_request() -> None:
    assert RequestParser().feed(b"sender=a@b.test\n=value\n\n") == [
        MalformedRequest("not a name=value line: '=value'")]


def line_by_line(lines: list[str]) -> PolicyEvent:
    """What a request's lines come to, judged one line at a time in order."""
    attributes: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition("=")
        if not sep or not name:
            return MalformedRequest(f"not a name=value line: {_preview(line)}")
        if name in attributes:
            return MalformedRequest(f"attribute given twice: {_preview(name)}")
        attributes[name] = value
    return PolicyRequest(attributes)


LINES = st.lists(st.text(alphabet="ab=c ", max_size=6).filter(lambda line: line), min_size=1,
                 max_size=8)


@given(LINES)
def test_the_attributes_are_judged_as_line_by_line(lines: list[str]) -> None:
    """Lines gathered in C, and the first fault named when there is one, as a loop over
    the lines in order would: the same request or the same complaint."""
    body = "\n".join(lines).encode()
    assert RequestParser().feed(body + b"\n\n") == [line_by_line(lines)]
