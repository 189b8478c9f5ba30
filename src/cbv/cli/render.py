"""How verdicts look on a terminal, in CSV and as JSON lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cbv.verdict_csv import CSV_COLUMNS, csv_header, to_csv

__all__ = ["CSV_COLUMNS", "csv_header", "to_csv", "to_json", "to_text"]

if TYPE_CHECKING:
    from rich.text import Text

    from cbv.model import Verdict

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


def to_text(verdict: Verdict) -> Text:
    """One readable block: the verdict line, the deciding reply, the transcript if any."""
    from rich.text import Text  # only here: JSON and CSV output need no rich

    text = Text()
    text.append(f"{verdict.address}  ")
    text.append(verdict.result.value.upper(), RESULT_STYLES[verdict.result])
    text.append(f"  {verdict.reason.value}")
    if verdict.catch_all:
        text.append("  (catch-all)", "magenta")
    text.append(f"  [{verdict.duration_ms:.0f} ms]", "dim")
    where = []
    if verdict.mx:
        where.append(f"{verdict.mx}[{verdict.ip}]:{verdict.port}")
    if verdict.stage:
        where.append(f"at {verdict.stage.value}")
    if verdict.evidence:
        where.append(f"by {verdict.evidence}")
    if where:
        text.append("\n    " + " ".join(where), "dim")
    if verdict.reply is not None:
        reply = verdict.reply
        code = f"{reply.code} {reply.enhanced} " if reply.enhanced else f"{reply.code} "
        text.append("\n    " + code + reply.text.replace("\n", " / "))
    if verdict.detail:
        text.append("\n    " + verdict.detail, "dim")
    for line in verdict.transcript or []:
        text.append(f"\n      {line.at_ms:8.1f} ms {line.host} {line.direction}: ", "dim")
        text.append(line.line)
    return text
