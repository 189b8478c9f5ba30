"""Text printed into a pipe without rich is what rich would have printed there."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from cbv.cli import render
from cbv.cli.verify import may_colour

STYLES = st.sampled_from([None, "dim", "bold red", "magenta"])
SEGMENTS = st.lists(st.tuples(st.text(max_size=30), STYLES), max_size=8)


def printed_by_rich(segments: render.Segments) -> str:
    out = io.StringIO()
    Console(file=out, force_terminal=False, width=80, highlight=False).print(
        render.styled(segments), soft_wrap=True)
    return out.getvalue()


@given(SEGMENTS)
def test_plain_text_is_what_rich_prints_without_a_terminal(segments: render.Segments) -> None:
    text = render.plain(segments)
    if text is None:
        assert any("\t" in part for part, _ in segments)
    else:
        assert text + "\n" == printed_by_rich(segments)


def test_the_control_codes_rich_strips_and_a_tab_left_to_rich() -> None:
    segments: render.Segments = [("\x07c\r\x0bd\x1b", "dim"), ("\n界e", None)]
    text = render.plain(segments)
    assert text == "cd\x1b\n界e" and text + "\n" == printed_by_rich(segments)
    assert render.plain([("\x1f\t", None)]) is None


class Stream(io.StringIO):
    def __init__(self, terminal: bool) -> None:
        super().__init__()
        self.terminal = terminal

    def isatty(self) -> bool:
        return self.terminal


def test_colour_only_for_a_terminal_or_when_the_environment_asks() -> None:
    assert may_colour(Stream(terminal=True), {})
    assert not may_colour(Stream(terminal=False), {})
    assert may_colour(Stream(terminal=False), {"FORCE_COLOR": "1"})
    assert may_colour(Stream(terminal=False), {"TTY_COMPATIBLE": "1"})
