"""Verdicts for input that is not an address, printed without the Verdict model.

A script that calls `cbv verify` once per address pays the start-up each time; when the input
is not an address and the configuration sets nothing, the answer needs neither the engine nor
pydantic (about half of the start-up). Such a Verdict is fixed but for the input, the reason
and the time, so it is printed here as cbv.cli.render prints that Verdict, byte for byte in
text, JSON and CSV (tests/cli/test_syntax_only.py compares the two for many inputs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cbv.address import AddressError, parse_address
from cbv.cli.render import RESULT_STYLES, Segments
from cbv.text import visible
from cbv.verdict_csv import csv_line


@dataclass(frozen=True, slots=True)
class SyntaxFailure:
    """What cbv.engine.syntax.syntax_verdict would hold: every other field is its default."""

    address: str  # the input as a verdict echoes it
    detail: str  # why it is not an address
    checked_at: datetime

    def to_json(self) -> str:
        """As pydantic writes the Verdict: its fields in order, compact, UTF-8 as is."""
        stamp = self.checked_at.isoformat().removesuffix("+00:00") + "Z"
        return json.dumps({
            "address": self.address, "result": "fail", "reason": "bad_syntax",
            "catch_all": None, "mx": None, "ip": None, "port": None, "stage": "syntax",
            "reply": None, "sender": None, "cached": False, "checked_at": stamp,
            "expires_at": None, "duration_ms": 0.0, "transcript": None, "detail": self.detail,
            "evidence": None, "smtp_cbv_result": "error",
        }, ensure_ascii=False, separators=(",", ":"))

    def to_csv(self) -> str:
        return csv_line([self.address, "fail", "bad_syntax", "", "", "", "", "syntax", "", "",
                         "", "", "error", 0.0, self.detail, ""])

    def to_text(self) -> Segments:
        text: Segments = [(f"{self.address}  ", None), ("FAIL", RESULT_STYLES["fail"]),
                          ("  bad_syntax", None), ("  [0 ms]", "dim"), ("\n    at syntax", "dim")]
        if self.detail:
            text.append(("\n    " + self.detail, "dim"))
        return text


def syntax_failures(addresses: list[str]) -> list[SyntaxFailure] | None:
    """Every address's verdict when none of them passes the syntax check; else None."""
    failures = []
    for raw in addresses:
        try:
            parse_address(raw)
        except AddressError as exc:
            failures.append(SyntaxFailure(visible(raw), str(exc), datetime.now(UTC)))
        else:
            return None
    return failures
