"""The front-end benchmark's plumbing at a tiny scale, as `python -m bench frontends` runs
it; no timing is asserted."""


from bench.__main__ import main as bench_main
from bench.frontends import Scale, report, run

TINY = Scale(seconds=0.3, rounds=1, connections=3, senders=10)


def test_every_front_end_answers_from_the_cache() -> None:
    results = run(TINY)
    assert set(results.best["policy"].answers) == {"DUNNO", "550"}
    assert set(results.best["milter"].answers) == {"c", "y"}  # continue, 550 reply code
    assert set(results.best["http"].answers) == {"200"}
    assert all(best.rate > 0 for best in results.best.values())
    section = report(results, quick=True)
    assert section.startswith("## Front ends: policy, milter, HTTP\n")


def test_the_dispatcher_knows_it(capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench_main([]) == 0
    assert "frontends" in capsys.readouterr().out
