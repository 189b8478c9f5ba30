"""The status page's recent past: steps of time, the latest decisions, bounded memory."""

from __future__ import annotations

from typing import Any

from cbv.servers.history import History


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def series(history: History) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = history.snapshot()["series"]
    return found


def test_events_fall_into_the_step_of_their_time() -> None:
    clock = Clock(1000.0)
    history = History(clock, step=10.0, span=100.0)
    history.decided("policy", "a@b.test", "pass", "accepted", "accept", 0.001)
    clock.now = 1009.999
    history.cache_lookup(hit=True)
    clock.now = 1010.0  # the next step begins
    history.decided("policy", "c@b.test", "fail", "mailbox_unknown", "reject", 0.002)
    history.cache_lookup(hit=False)
    assert [(step["t"], step["results"], step["cache_hits"], step["cache_misses"])
            for step in series(history)] == [
        (1000.0, {"pass": 1}, 1, 0), (1010.0, {"fail": 1}, 0, 1)]


def steps_of_lookups(lookups: list[tuple[float, bool]]) -> list[tuple[float, int, int]]:
    """(start, hits, misses) of each 10 s step, after cache lookups at (time, hit)."""
    clock = Clock(lookups[0][0])
    history = History(clock, step=10.0, span=100.0)
    for clock.now, hit in lookups:
        history.cache_lookup(hit)
    return [(step["t"], step["cache_hits"], step["cache_misses"]) for step in series(history)]


def test_a_clock_set_back_counts_into_the_latest_step() -> None:
    assert steps_of_lookups([(1015.0, True), (1004.0, True)]) == [(1010.0, 2, 0)]


def test_a_step_after_a_quiet_spell_starts_on_its_own_boundary() -> None:
    assert steps_of_lookups([(1000.0, True), (1047.5, True), (1049.9, False)]) == [
        (1000.0, 1, 0), (1040.0, 1, 1)]


def test_the_latest_decisions_newest_first_and_bounded() -> None:
    clock = Clock(2000.0)
    history = History(clock, recent=3)
    for number in range(5):
        clock.now += 1
        history.decided("milter", f"u{number}@b.test", "pass", "accepted", "accept",
                        0.0125, would="reject" if number == 4 else "")
    recent = history.snapshot()["recent"]
    assert [entry["address"] for entry in recent] == ["u4@b.test", "u3@b.test", "u2@b.test"]
    assert recent[0] == {"at": 2005.0, "listener": "milter", "address": "u4@b.test",
                         "result": "pass", "reason": "accepted", "action": "accept",
                         "would": "reject", "duration_ms": 12.5}
    assert recent[1]["would"] is None


def test_steps_older_than_the_span_are_let_go() -> None:
    clock = Clock(0.0)
    history = History(clock, step=10.0, span=30.0)
    for start in range(0, 100, 10):
        clock.now = float(start)
        history.cache_lookup(hit=True)
    assert [step["t"] for step in series(history)] == [70.0, 80.0, 90.0]
