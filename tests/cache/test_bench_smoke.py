"""`python -m bench cache --quick` still runs; its figures are for docs/benchmarks.md only."""

from __future__ import annotations

import pytest

from bench import cache


def test_the_cache_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert cache.main(["--quick", "--no-docs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Cache")
    assert "| floor |" in out and "| SQLite |" in out
