"""Verdicts as CSV lines, the same columns for `cbv verify --output csv` and job results."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # csv_line serves the CLI's syntax-only verdicts, which import no pydantic
    from cbv.model import Verdict

CSV_COLUMNS = [
    "address", "result", "reason", "catch_all", "mx", "ip", "port", "stage",
    "code", "enhanced", "text", "sender", "smtp_cbv_result", "duration_ms", "detail",
    "evidence",
]


def csv_header() -> str:
    return csv_line(CSV_COLUMNS)


def csv_cells(verdict: Verdict) -> list[object]:
    reply = verdict.reply
    return [
        verdict.address, verdict.result.value, verdict.reason.value,
        "" if verdict.catch_all is None else str(verdict.catch_all).lower(),
        verdict.mx or "", verdict.ip or "", verdict.port or "",
        verdict.stage.value if verdict.stage else "",
        reply.code if reply else "", reply.enhanced or "" if reply else "",
        reply.text.replace("\n", " / ") if reply else "",
        verdict.sender if verdict.sender is not None else "", verdict.smtp_cbv_result,
        verdict.duration_ms, verdict.detail or "", verdict.evidence or "",
    ]


def to_csv(verdict: Verdict) -> str:
    return csv_line(csv_cells(verdict))


def csv_line(cells: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()
