"""docs/comparison.md stays true: the comparison with Exim's and Postfix's own callouts is
run again, and its verdicts must be the committed ones (latencies vary and are not compared)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.compare_verifiers import COMPARED, DOCS, main, stable_rows
from cbv.testing.zoo import SCENARIOS
from tests.peers.mail_world import require

pytestmark = pytest.mark.peers
require("postfix", "exim")


def test_every_compared_scenario_is_in_the_zoo() -> None:
    assert set(COMPARED) <= {scenario.name for scenario in SCENARIOS}


def test_docs_comparison_shows_what_cbv_exim_and_postfix_answer_today(tmp_path: Path) -> None:
    fresh = tmp_path / "comparison.md"
    assert main(["--output", str(fresh)]) == 0
    rows = stable_rows(fresh.read_text())
    assert len(rows) == len(COMPARED)
    assert rows == stable_rows(DOCS.read_text()), (
        "docs/comparison.md is stale: regenerate it with `python -m bench compare`")
