"""Syntax-only verdicts printed without pydantic look exactly like the Verdicts they stand for."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from rich.console import Console

from cbv.address import AddressError, parse_address
from cbv.cli import render
from cbv.cli.syntax_only import SyntaxFailure, syntax_failures
from cbv.engine.syntax import syntax_verdict
from cbv.model import Verdict

NOT_ADDRESSES = [
    "not an address", "two@@at.test", "a b@c", "", "   ", "\udcff", "x@bü_cher.test",
    "a@b.test\r\nDATA", "<a@b.test>", 'quote"in@b.test', "back\\slash@b.test", "tab\there",
    "a\u2028b\x85", "a@[300.1.1.1]", "x" * 65 + "@b.test", "é" * 40 + "@b.test", "😀",
    "a@-bad.test", '"unterminated@b.test', "a,b;c@d.test",
]
MOMENTS = [datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
           datetime(2026, 12, 6, 4, 5, 6, 500, tzinfo=UTC),
           datetime(2026, 12, 6, 4, 5, 6, 123456, tzinfo=UTC)]


def shown(text: object, terminal: bool) -> str:
    """What `cbv verify` prints for a rich Text: on a colour terminal, or into a pipe."""
    out = io.StringIO()
    Console(file=out, force_terminal=terminal, color_system="truecolor" if terminal else None,
            width=80, highlight=False).print(text, soft_wrap=True)
    return out.getvalue()


def parse_error(raw: str) -> AddressError | None:
    try:
        parse_address(raw)
    except AddressError as exc:
        return exc
    return None


def both(raw: str, moment: datetime | None = None) -> tuple[SyntaxFailure, Verdict]:
    error = parse_error(raw)
    assert error is not None, f"{raw!r} is an address"
    verdict = syntax_verdict(raw, error)
    if moment is not None:
        verdict = verdict.model_copy(update={"checked_at": moment})
    failures = syntax_failures([raw])
    assert failures is not None
    return dataclasses.replace(failures[0], checked_at=verdict.checked_at), verdict


def assert_printed_alike(failure: SyntaxFailure, verdict: Verdict) -> None:
    assert failure.to_json() == render.to_json(verdict)
    assert failure.to_csv() == render.to_csv(verdict)
    for terminal in (True, False):
        assert (shown(render.styled(failure.to_text()), terminal)
                == shown(render.styled(render.to_text(verdict)), terminal))
    assert render.plain(failure.to_text()) == render.plain(render.to_text(verdict))


@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("raw", NOT_ADDRESSES)
def test_printed_as_the_verdict_is_in_text_json_and_csv(raw: str, moment: datetime) -> None:
    assert_printed_alike(*both(raw, moment))


@given(st.text(max_size=40))
def test_any_non_address_is_printed_as_its_verdict(raw: str) -> None:
    assume(parse_error(raw) is not None)
    assert_printed_alike(*both(raw))


def test_one_address_among_the_input_means_the_engine_is_needed() -> None:
    assert syntax_failures(["not an address", "alice@example.test"]) is None
    assert syntax_failures([]) == []
