"""The smtpcbd line codec: what qpsmtpd and Exim send, at any split, and safe answers."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from cbv.protocol.smtpcbd import (
    BadRequest,
    CallbackEvent,
    CallbackRequest,
    Code,
    LineParser,
    format_response,
    parse_line,
)


def feed_in_chunks(data: bytes, cuts: list[int], parser: LineParser | None = None
                   ) -> list[CallbackEvent]:
    parser = parser or LineParser()
    events: list[CallbackEvent] = []
    start = 0
    for cut in sorted({min(c, len(data)) for c in cuts}):
        events += parser.feed(data[start:cut])
        start = cut
    events += parser.feed(data[start:])
    return events + parser.end_of_input()


def test_qpsmtpd_format_is_the_address_in_angle_brackets() -> None:
    assert LineParser().feed(b"<alice@sender.test>\n") == [CallbackRequest("alice@sender.test")]


def test_the_null_sender() -> None:
    assert parse_line(b"<>") == CallbackRequest("")
    assert parse_line(b"") == CallbackRequest("")


def test_bare_addresses_crlf_and_blanks_as_exim_users_send_them() -> None:
    assert parse_line(b"alice@sender.test") == CallbackRequest("alice@sender.test")
    assert parse_line(b" <alice@sender.test> \r") == CallbackRequest("alice@sender.test")


def test_a_quoted_local_part_as_qpsmtpd_formats_it() -> None:
    assert parse_line(b'<"john doe"@sender.test>') == CallbackRequest('"john doe"@sender.test')


def test_a_last_line_without_newline_counts_at_end_of_input() -> None:
    parser = LineParser()
    assert parser.feed(b"<a@b.test>") == []
    assert parser.end_of_input() == [CallbackRequest("a@b.test")]
    assert parser.end_of_input() == []


def test_framing_problems_are_bad_requests() -> None:
    assert parse_line(b"<a@b.test") == BadRequest("unbalanced angle brackets")
    assert parse_line(b"a@b.test>") == BadRequest("unbalanced angle brackets")
    assert parse_line(b"<") == BadRequest("unbalanced angle brackets")
    assert parse_line(b"<a\x00@b.test>") == BadRequest("request contains a control character")
    assert parse_line(b"<\xff@b.test>") == BadRequest("request is not UTF-8")


def test_an_overlong_line_is_one_bad_request_at_once_and_not_held() -> None:
    parser = LineParser(max_line=50)
    assert parser.feed(b"<" + b"a" * 200) == [BadRequest("line longer than 50 bytes")]
    assert parser.feed(b"a" * 200) == []
    assert parser.feed(b"@b.test>\n<c@d.test>\n") == [CallbackRequest("c@d.test")]


def test_an_overlong_line_ended_by_eof() -> None:
    parser = LineParser(max_line=10)
    assert parser.feed(b"x" * 30) == [BadRequest("line longer than 10 bytes")]
    assert parser.end_of_input() == []


def test_a_line_at_the_limit_waits_for_its_newline() -> None:
    parser = LineParser(max_line=10)
    assert parser.feed(b"<a@b.test>") == []
    assert parser.end_of_input() == [CallbackRequest("a@b.test")]


lines = st.lists(
    st.one_of(
        st.emails().map(lambda a: f"<{a}>"),
        st.just("<>"),
        st.text(alphabet=st.characters(exclude_characters="\n", exclude_categories=["Cs"]),
                max_size=40),
    ),
    max_size=8,
)


@given(lines, st.lists(st.integers(min_value=0, max_value=500), max_size=20))
def test_any_split_gives_the_same_events(batch: list[str], cuts: list[int]) -> None:
    data = "".join(f"{line}\n" for line in batch).encode()
    assert feed_in_chunks(data, cuts) == [parse_line(line.encode()) for line in batch]


@given(st.binary(max_size=3000), st.lists(st.integers(min_value=0, max_value=3000), max_size=20))
def test_garbage_never_raises(data: bytes, cuts: list[int]) -> None:
    events = feed_in_chunks(data, cuts, LineParser(max_line=100))
    assert all(isinstance(e, CallbackRequest | BadRequest) for e in events)


def test_response_layout() -> None:
    line = format_response(Code.FAIL, "550 5.1.1 <a@b.test>: User unknown", "a@b.test",
                           "mx1.b.test", 1700000000, 1700010800)
    assert line == (
        b"FAIL:550 5.1.1 <a@b.test>; User unknown:a@b.test:mx1.b.test:1700000000:1700010800\n"
    )


def test_missing_server_is_a_dash() -> None:
    assert format_response(Code.OK, "null sender", "", "", 1, 2) == b"OK:null sender::-:1:2\n"


def perl_split(line: str) -> list[str]:
    """What `split(/:/, $res)` gives: trailing empty fields dropped."""
    fields = line.split(":")
    while fields and fields[-1] == "":
        fields.pop()
    return fields


@given(st.sampled_from(list(Code)), st.text(), st.text(), st.text(),
       st.integers(min_value=0, max_value=2**33), st.integers(min_value=0, max_value=2**33))
def test_every_field_survives_the_plugins_split(
    code: Code, message: str, address: str, server: str, timestamp: int, expire: int
) -> None:
    line = format_response(code, message, address, server, timestamp, expire).decode("ascii")
    assert line.endswith("\n")
    assert "\n" not in line[:-1]
    assert "\r" not in line
    fields = line[:-1].split(":")
    assert len(fields) == 6
    assert fields[0] == code.value
    assert fields[4:] == [str(timestamp), str(expire)]
    assert perl_split(line[:-1])[0] == code.value
    assert re.fullmatch(r"[ -~]*", line[:-1])
