"""The two ways cbv cleans outside text: shown back as it was, or sent as one ASCII line."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from cbv.text import ascii_line, visible


def test_visible_keeps_every_script_and_marks_control_characters() -> None:
    assert visible("anna@bücher.test") == "anna@bücher.test"
    assert visible("a\x00b\r\nc\td") == "a?b??c?d"


def test_ascii_line_is_one_line_of_printable_ascii() -> None:
    assert ascii_line("550 5.1.1 no such user") == "550 5.1.1 no such user"
    assert ascii_line("Bücher\r\nX-Injected: 1\tend") == "B?cher  X-Injected: 1 end"


@given(st.text())
def test_any_text_comes_out_safe(text: str) -> None:
    assert len(visible(text)) == len(ascii_line(text)) == len(text)
    assert visible(text).isprintable()
    line = ascii_line(text)
    assert line.isascii() and line.isprintable()
