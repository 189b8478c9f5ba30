"""Verdicts, records and a clock for cache tests."""

from __future__ import annotations

from cbv.cache.records import CachedVerdict, Lifetimes
from cbv.model import Reason, SmtpReply, Stage, Verdict, utcnow

T0 = 1_800_000_000.0
LIFETIMES = Lifetimes(pass_ttl=7 * 86_400, pass_refresh=86_400, fail_ttl=3 * 3_600,
                      transient_ttl=300, unknown_ttl=3_600)


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def verdict(address: str, reason: Reason = Reason.ACCEPTED) -> Verdict:
    code = 250 if reason.result.value == "pass" else 550
    return Verdict(
        address=address,
        result=reason.result,
        reason=reason,
        catch_all=False,
        mx="mx1.example.test",
        ip="127.0.0.2",
        port=2525,
        stage=Stage.RCPT,
        reply=SmtpReply(code=code, enhanced="2.1.5", text=f"<{address}>: recipient ok"),
        sender="",
        checked_at=utcnow(),
        duration_ms=12.5,
    )


def record(address: str, reason: Reason = Reason.ACCEPTED, now: float = T0) -> CachedVerdict:
    stored = LIFETIMES.record(verdict(address, reason), now)
    assert stored is not None
    return stored
