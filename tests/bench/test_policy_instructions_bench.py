"""`python -m bench policy-instructions`: its arithmetic, its refusals, and the measured
process run for real (without valgrind: what it does under it is the same program)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import REPO, Counted
from bench.policy_instructions import PerDecision, Sizes, main, per_decision, report


def test_per_decision_is_what_the_bigger_run_did_beyond_the_smaller() -> None:
    small = Counted("", instructions=3_000_000_000, i1_misses=50_000_000, d1_misses=40_000_000)
    big = Counted("", instructions=3_350_000_000, i1_misses=56_000_000, d1_misses=46_000_000)
    assert per_decision(small, big, Sizes(1000, 3000)) == PerDecision(175_000, 3_000, 3_000)


def test_the_report_gives_each_tree_against_the_first() -> None:
    section = report({Path("/main/src"): PerDecision(175_000, 3_000, 2_800),
                      Path("/change/src"): PerDecision(140_000, 2_400, 2_600)},
                     Sizes(1000, 3000), "python -m bench policy-instructions", 90.0)
    assert "| this tree | 175.0 k | 1.00x | 3,000 | 2,800 |" in section
    assert "| `/change/src` | 140.0 k | 0.80x | 2,400 | 2,600 |" in section


def test_without_valgrind_it_says_so_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["--no-docs"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bench policy-instructions: valgrind is not installed (apt-get install valgrind)"]


@pytest.mark.parametrize("arguments", [["--small", "5", "--big", "5"], ["--small", "0"],
                                       ["--src", "/nonexistent/tree"]])
def test_what_would_measure_nothing_is_refused_in_one_line(
        arguments: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*arguments, "--no-docs"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_the_measured_process_answers_every_request_from_the_cache() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.policy_instructions", "--child", "30", "60"],
        env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "src"), str(REPO)])),
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["decisions 30"]
