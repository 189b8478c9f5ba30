"""The policy benchmark's plumbing at a tiny scale, as `python -m bench policy` runs it;
no timing is asserted."""


from bench.__main__ import main as bench_main
from bench.policy import Scale, report, run

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
    assert section.startswith("## Policy listener\n")


def test_the_dispatcher_knows_it(capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench_main([]) == 0
    assert "policy" in capsys.readouterr().out
