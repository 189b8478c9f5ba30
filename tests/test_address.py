"""Strict address parsing: valid RFC 5321 mailboxes in, anything injectable out."""

from __future__ import annotations

import pickle
import string
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cbv.address import _DOT_STRING, _QUOTED, AddressError, parse_address, parse_domain


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("alice@Example.TEST", "alice@example.test"),
        ("Alice.Smith+tag@example.test", "Alice.Smith+tag@example.test"),
        ('"john doe"@example.test', '"john doe"@example.test'),
        ('"a\\"b"@example.test', '"a\\"b"@example.test'),
        ("anna@bücher.test", "anna@xn--bcher-kva.test"),
        ("x@example.test.", "x@example.test"),
        ("  x@example.test\t", "x@example.test"),
        ("x@[192.0.2.1]", "x@[192.0.2.1]"),
        ("x@[IPv6:2001:db8::1]", "x@[IPv6:2001:db8::1]"),
        ("jürgen@example.test", "jürgen@example.test"),
    ],
)
def test_valid_addresses(text: str, normalised: str) -> None:
    assert str(parse_address(text)) == normalised


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("alice", "no '@'"),
        ("@example.test", "empty local"),
        ("alice@", "empty domain"),
        ("a..b@example.test", "bad local"),
        (".a@example.test", "bad local"),
        ("a b@example.test", "bad local"),
        ("alice@exa mple.test", "bad domain label"),
        ("alice@-bad.test", "bad domain label"),
        ("a@b.test\r\nDATA", "CR"),
        ("a@b.test\nRSET", "LF"),
        ("a\x00@b.test", "NUL"),
        ("<a@b.test>", "'<'"),
        ("a@b.test>", "'>'"),
        ("x" * 65 + "@b.test", "longer than 64"),
        ("a@" + "b" * 64 + ".test", "bad domain label"),
        ("a@[300.1.1.1]", "address literal"),
        ('"unterminated@b.test', "bad"),
        ("a\x7f@b.test", "control"),
    ],
)
def test_invalid_addresses(text: str, why: str) -> None:
    with pytest.raises(AddressError, match=why):
        parse_address(text)


@given(st.text(max_size=80))
def test_parsed_addresses_never_carry_smtp_metacharacters(text: str) -> None:
    try:
        address = parse_address(text)
    except AddressError:
        return
    rendered = str(address)
    assert not any(c in rendered for c in "\r\n\0<>")
    assert rendered.count("@") >= 1


ATEXT_ASCII = set(string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~")
QTEXT_ASCII = {chr(c) for c in range(0x20, 0x7F)} - {'"', "\\"}
BEYOND_ASCII = [0x80, 0xA0, 0xFC, 0x2028, 0xD800, 0xDFFF, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF]


@pytest.mark.parametrize("code", [*range(0x80), *BEYOND_ASCII])
def test_local_parts_allow_atext_and_qtext_of_rfc_6531(code: int) -> None:
    """Every character beyond ASCII is atext and qtext; in ASCII only the RFC's own."""
    char = chr(code)
    assert bool(_DOT_STRING.fullmatch(char)) == (code >= 0x80 or char in ATEXT_ASCII)
    assert bool(_QUOTED.fullmatch(f'"{char}"')) == (code >= 0x80 or char in QTEXT_ASCII)


def test_parse_domain() -> None:
    assert parse_domain("Example.TEST.") == "example.test"
    with pytest.raises(AddressError):
        parse_domain("bad_domain.test")


def test_an_address_is_keyed_by_its_text_and_compared_by_its_parts() -> None:
    """Written out and hashed once at parse time; equality, repr and `replace` are still
    the two parts'."""
    first, again = parse_address("Someone@Example.TEST"), parse_address("Someone@example.test")
    assert first == again and hash(first) == hash(again) == hash("Someone@example.test")
    assert repr(first) == "Address(local='Someone', domain='example.test')"
    other = replace(first, local="other")
    assert str(other) == "other@example.test" and {other: 1}.get(parse_address(str(other))) == 1
    assert pickle.loads(pickle.dumps(first)) == first
