"""The policy benchmark's plumbing at a tiny scale, as `python -m bench policy` runs it;
no timing is asserted."""

from pathlib import Path

from bench.__main__ import main as bench_main
from bench.policy import BEGIN, END, Scale, report, run, write_docs

TINY = Scale(seconds=0.3, rounds=1, connections=4, idle=20, senders=10)


def test_both_servers_answer_alike_and_cbv_logs_every_decision() -> None:
    results = run(TINY)
    best = results.cbv_max.best
    assert best is not None
    assert results.reference_max.best is not None
    assert set(best.answers) == {"DUNNO", "550"}  # pass and fail senders, from the cache
    assert set(results.reference_max.best.answers) == {"DUNNO", "550"}
    assert results.cbv_half.answered > 0
    assert results.log_lines == results.cbv_decisions
    assert results.cbv_rss[2] == results.reference_rss[2] == TINY.idle
    section = report(results, quick=True)
    assert section.startswith(f"{BEGIN}\n## Policy listener\n")
    assert section.endswith(END)


def test_docs_section_is_replaced_in_place(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- bench:cache -->\nkept\n<!-- /bench:cache -->\n")
    write_docs(f"{BEGIN}\nfirst\n{END}", docs)
    write_docs(f"{BEGIN}\nsecond\n{END}", docs)
    text = docs.read_text()
    assert f"{BEGIN}\nsecond\n{END}" in text
    assert "first" not in text
    assert "<!-- bench:cache -->\nkept\n" in text


def test_the_dispatcher_knows_it(capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench_main([]) == 0
    assert "policy" in capsys.readouterr().out
