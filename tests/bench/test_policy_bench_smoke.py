"""The policy benchmark's plumbing at a tiny scale, as `python -m bench policy` runs it;
no timing is asserted."""


import asyncio
import time

from bench.__main__ import main as bench_main
from bench.policy import Scale, median_round, report, run
from bench.policy_load import Run
from bench.policy_servers import HOLD_SECONDS, LoopHolds

TINY = Scale(seconds=0.3, rounds=1, latency_rounds=2, connections=4, idle=20, senders=10)


def test_both_servers_answer_alike_and_cbv_logs_every_decision() -> None:
    results = run(TINY)
    best = results.cbv_max.best
    assert best is not None
    assert results.reference_max.best is not None
    assert set(best.answers) == {"DUNNO", "550"}  # pass and fail senders, from the cache
    assert set(results.reference_max.best.answers) == {"DUNNO", "550"}
    half_rate_runs = (results.cbv_half, results.reference_half, results.uvloop_half)
    assert [len(runs) for runs in half_rate_runs] == [TINY.latency_rounds] * 3
    assert all(run.answered > 0 for runs in half_rate_runs for run in runs)
    assert sorted(results.busy_at_half) == ["cbv", "reference", "uvloop"]
    assert all(len(shares) == TINY.latency_rounds and all(share > 0 for share in shares)
               for shares in results.busy_at_half.values())
    assert sorted(results.holds_at_half) == ["cbv", "reference"]
    assert all(answered > 0 and longest > 0
               for _, longest, answered in results.holds_at_half.values())
    assert results.log_lines == results.cbv_decisions
    assert results.cbv_rss[2] == results.reference_rss[2] == TINY.idle
    section = report(results, quick=True)
    assert section.startswith("## Policy listener\n")
    assert "| cbv on uvloop: p50 / p99 / max latency at the same rate" in section
    assert "| callbacks that held the event loop over 1 ms at that rate" in section


def test_a_callback_that_holds_the_loop_is_counted_and_the_quick_ones_not() -> None:
    holds = LoopHolds()
    original = asyncio.Handle._run

    async def hold_once() -> tuple[int, float]:
        loop = asyncio.get_running_loop()
        holds.start()
        loop.call_soon(time.sleep, 3 * HOLD_SECONDS)  # the callback that holds the loop
        for _ in range(100):
            loop.call_soon(int)
        await asyncio.sleep(0)  # after the callbacks scheduled before it
        return holds.stop()

    count, longest = asyncio.run(hold_once())
    assert count == 1
    assert longest >= 3 * HOLD_SECONDS
    assert asyncio.Handle._run is original


def test_the_dispatcher_knows_it(capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench_main([]) == 0
    assert "policy" in capsys.readouterr().out


def test_the_latency_target_reads_the_median_round() -> None:
    runs = [Run(latencies_ms=[float(p99)] * 100) for p99 in (9, 1, 4, 2)]
    assert median_round(runs).percentile(0.99) == 2.0
    assert median_round(runs[:3]).percentile(0.99) == 4.0
