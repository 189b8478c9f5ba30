"""The start-up benchmark's plumbing, once per command: no timing is asserted."""

from __future__ import annotations

from bench.startup import COMMANDS, TARGETED, measure, report


def test_every_command_runs_and_the_report_names_each_target() -> None:
    times = measure(runs=1)
    assert set(times) == set(COMMANDS)
    assert all(len(values) == 1 and values[0][0] > 0 for values in times.values())
    section = report(times, 1, "0.00 0.00 0.00", "0.00 0.00 0.00")
    for name in TARGETED:
        assert f"- Target: {name} within 0.2 s: " in section
