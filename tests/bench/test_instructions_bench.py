"""`python -m bench instructions`: its arithmetic, its refusals, and one real count under
valgrind at a tiny size (no figure is asserted beyond its being there)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.callout import FULL, dns_main, host_ip
from bench.helpers import Helper
from bench.instructions import REPO, Sizes, counted, main, per_callout, report, scale_of
from bench.mx_farm import FarmProcess

TINY = Sizes(small=2, big=4, concurrency=5)


def test_per_callout_is_what_the_bigger_run_did_beyond_the_smaller() -> None:
    # 10 callouts cost 3.0 G with start-up, 30 callouts 3.4 G: 20 M per callout.
    assert per_callout((10, 3_000_000_000), (30, 3_400_000_000)) == 20_000_000
    with pytest.raises(ValueError, match="no more callouts"):
        per_callout((10, 3_000_000_000), (10, 3_100_000_000))


def test_the_report_gives_each_row_against_the_floor() -> None:
    section = report({"floor": 700_000.0, "cbv": 1_610_000.0, "/a/src": 1_540_000.0}, TINY,
                     "python -m bench instructions", 12.0)
    assert "| floor: bare asyncio client | 700.0 k | 1.00x |" in section
    assert "| cbv verify() per address, MX domains only | 1,610.0 k | 2.30x |" in section
    assert "| the same, cbv from `/a/src` | 1,540.0 k | 2.20x |" in section


def test_without_valgrind_it_says_so_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["--no-docs"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "bench instructions: valgrind is not installed (apt-get install valgrind)"]


@pytest.mark.parametrize("sizes", [["--small", "5", "--big", "5"], ["--big", "5000"],
                                   ["--src", "/nonexistent/tree"]])
def test_sizes_that_measure_nothing_are_refused_in_one_line(
        sizes: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*sizes, "--no-docs"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.fixture
def farm_and_dns() -> Iterator[tuple[int, str]]:
    farm = FarmProcess([host_ip(h) for h in range(FULL.hosts)], (0,), 600)
    try:
        dns = Helper("fake-dns", dns_main, scale_of(TINY.big, TINY.concurrency), 600)
        try:
            yield farm.port, dns.info["nameserver"]
        finally:
            dns.stop()
    finally:
        farm.stop()


def test_a_count_under_valgrind_gives_the_callouts_made_and_the_instructions(
        farm_and_dns: tuple[int, str]) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (scripts/install-test-deps installs it)")
    port, nameserver = farm_and_dns
    callouts, instructions = counted("cbv", REPO / "src", port, nameserver, TINY.small, TINY)
    assert callouts == TINY.small * FULL.per_domain // 2  # the MX domains' addresses
    assert instructions > 100_000_000  # a Python process's start-up alone is more


def test_a_tree_that_cannot_run_is_one_clear_error(
        farm_and_dns: tuple[int, str], tmp_path: Path) -> None:
    if shutil.which("valgrind") is None:
        pytest.skip("valgrind is not installed (scripts/install-test-deps installs it)")
    port, nameserver = farm_and_dns
    (tmp_path / "cbv").mkdir()
    (tmp_path / "cbv" / "__init__.py").write_text("raise ImportError('a broken tree')\n")
    with pytest.raises(RuntimeError, match="under valgrind failed: ImportError: a broken tree"):
        counted("cbv", tmp_path, port, nameserver, TINY.small, TINY)
