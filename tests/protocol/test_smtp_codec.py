"""The SMTP reply codec: any split of a valid stream gives the same replies; bad input is
refused with ReplyError, never a crash or unbounded buffering."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbv.protocol.smtp import (
    CommandError,
    Reply,
    ReplyError,
    ReplyParser,
    encode_command,
    parse_ehlo_extensions,
)

codes = st.integers(200, 599)
texts = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
)
replies = st.builds(lambda code, lines: Reply(code, tuple(lines)), codes,
                    st.lists(texts, min_size=1, max_size=5))


def render(reply: Reply) -> bytes:
    last = len(reply.lines) - 1
    return b"".join(
        f"{reply.code}{' ' if i == last else '-'}{line}\r\n".encode()
        for i, line in enumerate(reply.lines)
    )


def feed_in_pieces(data: bytes, cuts: list[int]) -> list[Reply]:
    parser = ReplyParser()
    out: list[Reply] = []
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        out.extend(parser.feed(data[start:point]))
        start = point
    return out


@given(st.lists(replies, min_size=1, max_size=6), st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_gives_the_same_replies(sent: list[Reply], cuts: list[int]) -> None:
    data = b"".join(render(r) for r in sent)
    received = feed_in_pieces(data, cuts)
    assert [(r.code, tuple(line.rstrip() for line in r.lines)) for r in received] == [
        (r.code, tuple(line.rstrip() for line in r.lines)) for r in sent
    ]


@given(st.binary(max_size=3000), st.lists(st.integers(0, 3000), max_size=8))
def test_arbitrary_bytes_never_crash(data: bytes, cuts: list[int]) -> None:
    parser = ReplyParser(max_line=512, max_reply_bytes=2048)
    start = 0
    for point in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        try:
            for reply in parser.feed(data[start:point]):
                assert 200 <= reply.code <= 599
        except ReplyError:
            return
        start = point


def test_multiline_reply_and_enhanced_code() -> None:
    (reply,) = ReplyParser().feed(b"250-mx.test\r\n250-PIPELINING\r\n250 STARTTLS\r\n")
    assert reply.code == 250 and reply.lines == ("mx.test", "PIPELINING", "STARTTLS")
    assert parse_ehlo_extensions(reply) == {"PIPELINING": "", "STARTTLS": ""}
    (reply,) = ReplyParser().feed(b"550-5.1.1 first\r\n550 5.1.1 second\r\n")
    assert reply.enhanced == "5.1.1" and reply.text == "first\nsecond"


def test_enhanced_code_must_match_the_reply_class() -> None:
    (reply,) = ReplyParser().feed(b"550 2.1.5 odd server\r\n")
    assert reply.enhanced is None


def test_a_reply_read_for_its_enhanced_code_is_still_equal_to_one_not_read() -> None:
    """The code is kept once read; replies key the classifier's caches, so equality, hash
    and repr must not see it."""
    read, unread = Reply(550, ("5.1.1 no such user",)), Reply(550, ("5.1.1 no such user",))
    assert read.enhanced == "5.1.1" and read.enhanced == "5.1.1"
    assert read == unread and hash(read) == hash(unread) and repr(read) == repr(unread)
    assert unread.text == "no such user" and Reply(550, ("no code",)).enhanced is None


def test_bare_code_and_bare_lf_are_accepted() -> None:
    assert ReplyParser().feed(b"250\n")[0].lines == ("",)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"250-one\r\n251 two\r\n", "changed code"),
        (b"hello\r\n", "three-digit"),
        (b"650 out of range\r\n", "out of range"),
        (b"250?what\r\n", "separator"),
        (b"2" * 5000, "longer than"),
    ],
)
def test_grammar_violations(data: bytes, message: str) -> None:
    with pytest.raises(ReplyError, match=message):
        ReplyParser().feed(data)


def test_endless_multiline_reply_is_bounded() -> None:
    parser = ReplyParser(max_reply_bytes=10_000)
    endless = (b"250-" + b"x" * 100 + b"\r\n") * 200
    with pytest.raises(ReplyError, match="too long"):
        parser.feed(endless)


def test_a_one_line_reply_is_bounded_by_the_reply_limit_too() -> None:
    """One-line replies skip the multi-line bookkeeping, not the limit on a reply."""
    parser = ReplyParser(max_line=4096, max_reply_bytes=100)
    assert parser.feed(b"250 " + b"x" * 96 + b"\r\n")[0].lines == ("x" * 96,)
    with pytest.raises(ReplyError, match="too long"):
        parser.feed(b"250 " + b"x" * 97 + b"\r\n")


def test_a_parser_allowing_no_line_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one line"):
        ReplyParser(max_lines=0)


def test_good_replies_before_garbage_are_delivered_first() -> None:
    parser = ReplyParser()
    assert parser.feed(b"220 go ahead\r\n\x16\x03garbage\r\n")[0].code == 220
    assert parser.pending
    with pytest.raises(ReplyError):
        parser.feed(b"")


def test_commands_refuse_line_breaks() -> None:
    assert encode_command("RCPT", "TO:<a@b.test>") == b"RCPT TO:<a@b.test>\r\n"
    for bad in ("TO:<a@b>\r\nDATA", "TO:<a\n>", "TO:<a\0>"):
        with pytest.raises(CommandError):
            encode_command("RCPT", bad)
