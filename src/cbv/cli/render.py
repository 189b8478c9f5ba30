"""How verdicts look on a terminal, in CSV and as JSON lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cbv.verdict_csv import CSV_COLUMNS, csv_header, to_csv

__all__ = ["CSV_COLUMNS", "Segments", "csv_header", "plain", "styled", "to_csv", "to_json",
           "to_text"]

if TYPE_CHECKING:
    from rich.text import Text

    from cbv.model import Verdict

# Text and its style, a part at a time: made without rich, which only a terminal needs
# (importing it is a sixth of the command's start-up).
Segments = list[tuple[str, str | None]]
# What rich leaves out of a Text (rich.control.STRIP_CONTROL_CODES): BEL, BS, VT, FF, CR.
_RICH_STRIPS = dict.fromkeys((7, 8, 11, 12, 13))

# By the Result's value, which a Result equals: this module imports no pydantic, for the
# syntax-only verdicts of cbv.cli.syntax_only.
RESULT_STYLES = {
    "pass": "bold green",
    "fail": "bold red",
    "transient": "bold yellow",
    "unknown": "bold blue",
}


def to_json(verdict: Verdict) -> str:
    return verdict.model_dump_json(exclude_none=False)


def styled(segments: Segments) -> Text:
    """For a terminal: rich's Text, its parts in their styles."""
    from rich.text import Text

    text = Text()
    for part, style in segments:
        text.append(part, style)
    return text


def plain(segments: Segments) -> str | None:
    """What rich prints of `styled(segments)` where there is no terminal, without rich: the
    text less the control codes rich strips (tests/cli/test_render.py compares the two).
    None for text with a tab: rich expands it by the cells the characters before it take,
    which only rich knows (a wide character takes two, a control character none)."""
    text = "".join(part for part, _ in segments)
    if "\t" in text:
        return None
    return text.translate(_RICH_STRIPS)


def to_text(verdict: Verdict) -> Segments:
    """One readable block: the verdict line, the deciding reply, the transcript if any."""
    text: Segments = []
    text.append((f"{verdict.address}  ", None))
    text.append((verdict.result.value.upper(), RESULT_STYLES[verdict.result]))
    text.append((f"  {verdict.reason.value}", None))
    if verdict.catch_all:
        text.append(("  (catch-all)", "magenta"))
    text.append((f"  [{verdict.duration_ms:.0f} ms]", "dim"))
    where = []
    if verdict.mx:
        where.append(f"{verdict.mx}[{verdict.ip}]:{verdict.port}")
    if verdict.stage:
        where.append(f"at {verdict.stage.value}")
    if verdict.evidence:
        where.append(f"by {verdict.evidence}")
    if where:
        text.append(("\n    " + " ".join(where), "dim"))
    if verdict.reply is not None:
        reply = verdict.reply
        code = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
        text.append(("\n    " + code + reply.text.replace("\n", " / "), None))
    if verdict.detail:
        text.append(("\n    " + verdict.detail, "dim"))
    for line in verdict.transcript or []:
        text.append((f"\n      {line.at_ms:8.1f} ms {line.host} {line.direction}: ", "dim"))
        text.append((line.line, None))
    return text
