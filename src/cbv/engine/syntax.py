"""The verdict for input that is not an address: needs nothing but the model, so the CLI
can give it without building the engine."""

from __future__ import annotations

from cbv.address import AddressError
from cbv.model import Reason, Result, Stage, Verdict, utcnow
from cbv.text import visible


def syntax_verdict(raw: str, error: AddressError) -> Verdict:
    return Verdict(
        address=visible(raw),
        result=Result.FAIL,
        reason=Reason.BAD_SYNTAX,
        stage=Stage.SYNTAX,
        checked_at=utcnow(),
        detail=str(error),
    )
