"""`python -m bench policy [--quick]`: cached decisions through the Postfix policy listener.

In one run, each server in a process of its own and the load from this one:

1. a reference policy server (the least asyncio can do: parse, look the sender up in a
   dict, answer) and cbv's policy listener (site policy, verifier and its memory cache,
   one JSON log line per decision, written to a file) are each driven by 50 persistent
   connections, one request in flight on each, for the maximum rate, and cbv again on
   uvloop (`[server] event_loop`); rounds alternate between the three so a change in the
   machine's load hits all alike;
2. cbv, the reference and cbv on uvloop in turn at half of cbv's maximum rate, for
   latency percentiles (each server's median round counts: a stall of the machine in one
   round moves it no more than it moves a single request), and for how busy each
   server's process was at that rate: at the maximum rate one wake-up of the event loop
   serves many requests, at half of it nearly one each, so "half the maximum" keeps a
   server busier than half the time;
3. cbv and the reference once more at that rate, each callback of their event loops
   timed: how many held the loop over a millisecond, making every request that came
   meanwhile wait;
4. each holding 1,000 idle client connections, for resident memory.

Every sender was verified once before anything is timed, so cbv answers from its cache
as it would for most mail. Only loopback is used: a fake DNS and a fake MX in cbv's
process, `.test` names, and a guard that refuses any other name lookup.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.helpers import (
    Helper,
    cpu_seconds,
    machine_busy_seconds,
    raise_fd_limit,
    write_docs_section,
)
from bench.policy_load import (
    PolicyClient,
    Run,
    closed_loop,
    connect,
    open_loop,
    request,
    requests_for,
)
from bench.policy_servers import DOMAIN, HOLD_SECONDS, cbv_server, reference_server

# Targets from the issue (15).
MIN_RATE_RATIO = 0.60
MAX_CPU_RATIO = 1.5  # server CPU per decision, cbv's over the reference's
MAX_P99_MS = 5.0


@dataclass(frozen=True)
class Scale:
    seconds: float = 5.0  # each timed run
    rounds: int = 3  # maximum-rate runs per server, alternating; the best counts
    # Half-rate runs per server, alternating; the median p99 counts. Five, not three: on a
    # shared machine a round is quiet or not, and with three the median fell on whichever
    # two of them happened to share a busy patch.
    latency_rounds: int = 5
    connections: int = 50
    idle: int = 1000
    senders: int = 200  # half of them exist at the fake MX

    def sender_list(self) -> list[str]:
        return [f"{'pass' if n % 2 else 'fail'}-{n}@{DOMAIN}" for n in range(self.senders)]


QUICK = Scale(seconds=2.0, rounds=1, latency_rounds=1)


@dataclass
class Measured:
    best: Run | None = None
    server_cpu_us: float = 0.0  # server CPU per answer, over the best run
    client_cpu_share: float = 0.0  # how busy the load generator was during that run
    other_load: float = 0.0  # cores kept busy by anything else on the machine, that run
    answered: int = 0  # in all rounds

    @property
    def rate(self) -> float:
        return self.best.rate if self.best else 0.0


def median_round(runs: list[Run]) -> Run:
    """The run whose p99 is the median of the runs' (the lower middle one of an even
    count)."""
    ordered = sorted(runs, key=lambda run: run.percentile(0.99))
    return ordered[(len(ordered) - 1) // 2]


@dataclass
class Results:
    scale: Scale
    reference_max: Measured = field(default_factory=Measured)
    cbv_max: Measured = field(default_factory=Measured)
    uvloop_max: Measured = field(default_factory=Measured)  # cbv on uvloop (cbv[speed])
    half_rate: float = 0.0
    cbv_half: list[Run] = field(default_factory=list)  # in the order they ran
    reference_half: list[Run] = field(default_factory=list)
    uvloop_half: list[Run] = field(default_factory=list)
    busy_at_half: dict[str, list[float]] = field(default_factory=dict)  # server CPU / wall
    # By server: callbacks over HOLD_SECONDS, the longest (s) and the answers of the round.
    holds_at_half: dict[str, tuple[int, float, int]] = field(default_factory=dict)
    cbv_rss: tuple[float, float, int] = (0.0, 0.0, 0)
    reference_rss: tuple[float, float, int] = (0.0, 0.0, 0)
    cbv_decisions: int = 0  # every answer cbv gave, warm-up included, to check the log
    log_lines: int = 0

    @property
    def ratio(self) -> float:
        return self.cbv_max.rate / self.reference_max.rate

    @property
    def p99(self) -> float:
        return median_round(self.cbv_half).percentile(0.99)


async def timed_round(helper: Helper, clients: list[PolicyClient], requests: list[bytes],
                      seconds: float, into: Measured) -> None:
    server_cpu, client_cpu = helper.call("cpu"), cpu_seconds()
    busy = machine_busy_seconds()
    run = await closed_loop(clients, requests, seconds)
    busy = machine_busy_seconds() - busy
    server_used, client_used = helper.call("cpu") - server_cpu, cpu_seconds() - client_cpu
    into.answered += run.answered
    if run.rate > into.rate:
        into.best = run
        into.server_cpu_us = server_used / run.answered * 1e6
        into.client_cpu_share = client_used / run.seconds
        into.other_load = max(0.0, busy - server_used - client_used) / run.seconds


async def idle_rss(helper: Helper, address: str, senders: list[str], count: int
                   ) -> tuple[float, float, int]:
    """(RSS before, RSS with `count` connections open after one request each, held)."""
    before = helper.call("rss")
    clients = await connect(address, count)
    for n, client in enumerate(clients):
        await client.ask(request(senders[n % len(senders)], 10_000_000 + n))
    await asyncio.sleep(1.0)
    after, held = helper.call("rss"), helper.call("connections")
    for client in clients:
        client.close()
    await asyncio.sleep(0.5)
    return before, after, held


async def warm_up(address: str, senders: list[str]) -> dict[str, str]:
    """Verify every sender once (the callouts happen here); their answers, by sender."""
    [client] = await connect(address, 1)
    answers = {}
    for n, sender in enumerate(senders):
        answer = (await client.ask(request(sender, 20_000_000 + n))).decode()
        answers[sender] = answer[len("action="):]
    client.close()
    return answers


async def compare(cbv: Helper, reference: Helper, scale: Scale,
                  on_uvloop: Helper) -> Results:
    results = Results(scale)
    senders = scale.sender_list()
    requests = requests_for(senders, 20_000)
    ours = await connect(cbv.info["address"], scale.connections)
    theirs = await connect(reference.info["address"], scale.connections)
    uvloops = await connect(on_uvloop.info["address"], scale.connections)
    warm = min(1.0, scale.seconds)
    results.cbv_decisions += (await closed_loop(ours, requests, warm)).answered
    await closed_loop(theirs, requests, warm)
    await closed_loop(uvloops, requests, warm)
    for _ in range(scale.rounds):
        await timed_round(reference, theirs, requests, scale.seconds, results.reference_max)
        await timed_round(cbv, ours, requests, scale.seconds, results.cbv_max)
        await timed_round(on_uvloop, uvloops, requests, scale.seconds, results.uvloop_max)
    results.half_rate = results.cbv_max.rate / 2
    turns = [("cbv", cbv, ours, results.cbv_half),
             ("reference", reference, theirs, results.reference_half),
             ("uvloop", on_uvloop, uvloops, results.uvloop_half)]
    for round_number in range(scale.latency_rounds):
        for name, helper, clients, runs in turns if round_number % 2 == 0 else turns[::-1]:
            server_cpu = helper.call("cpu")
            run = await open_loop(clients, requests, results.half_rate, scale.seconds)
            busy = (helper.call("cpu") - server_cpu) / run.seconds
            results.busy_at_half.setdefault(name, []).append(busy)
            runs.append(run)
    for name, helper, clients, _ in turns[:2]:  # asyncio's: uvloop's callbacks are its own
        helper.call("holds_start")
        run = await open_loop(clients, requests, results.half_rate, scale.seconds)
        count, longest = helper.call("holds_stop")
        results.holds_at_half[name] = (count, longest, run.answered)
        if name == "cbv":
            results.cbv_decisions += run.answered
    for client in (*ours, *theirs, *uvloops):
        client.close()
    await asyncio.sleep(0.5)
    results.cbv_rss = await idle_rss(cbv, cbv.info["address"], senders, scale.idle)
    results.reference_rss = await idle_rss(reference, reference.info["address"], senders,
                                           scale.idle)
    results.cbv_decisions += (len(senders) + results.cbv_max.answered
                              + sum(run.answered for run in results.cbv_half) + scale.idle)
    return results


def run(scale: Scale) -> Results:
    """Both servers started, measured and stopped; cbv's decision log counted."""
    raise_fd_limit()
    senders = scale.sender_list()
    with tempfile.TemporaryDirectory(prefix="cbv-bench-") as tmp:
        log_path = Path(tmp) / "decisions.jsonl"
        cbv = Helper("cbv policy", cbv_server, str(log_path))
        reference: Helper | None = None
        on_uvloop: Helper | None = None
        try:
            answers = asyncio.run(warm_up(cbv.info["address"], senders))
            reference = Helper("reference policy", reference_server, answers)
            on_uvloop = Helper("cbv policy on uvloop", cbv_server,
                               str(Path(tmp) / "uvloop-decisions.jsonl"), "uvloop")
            asyncio.run(warm_up(on_uvloop.info["address"], senders))
            results = asyncio.run(compare(cbv, reference, scale, on_uvloop))
        finally:
            for helper in (cbv, reference, on_uvloop):
                if helper is not None:
                    helper.stop()
        with log_path.open(encoding="utf-8") as log:
            results.log_lines = sum(1 for line in log if '"event":"decision"' in line)
    return results


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _rss(rss: tuple[float, float, int]) -> str:
    before, after, held = rss
    return (f"{before:.1f} -> {after:.1f} MB, {held:,} held "
            f"({(after - before) * 1024 / max(held, 1):.1f} KB each)")


def report(results: Results, quick: bool) -> str:
    ref, ours, scale = results.reference_max, results.cbv_max, results.scale
    uvloop = results.uvloop_max
    cbv_half, ref_half = median_round(results.cbv_half), median_round(results.reference_half)
    uvloop_half = median_round(results.uvloop_half)
    assert ours.best is not None
    mix = ", ".join(f"`{kind}` {count:,}" for kind, count in sorted(ours.best.answers.items()))
    rate_ok = "met" if results.ratio >= MIN_RATE_RATIO else "NOT met"
    cpu_ratio = ours.server_cpu_us / ref.server_cpu_us
    cpu_ok = "met" if cpu_ratio <= MAX_CPU_RATIO else "NOT met"
    p99_ok = "met" if results.p99 < MAX_P99_MS else "NOT met"

    def p99s(runs: list[Run]) -> str:
        return " / ".join(f"{run.percentile(0.99):.2f}" for run in runs) + " ms"

    def busy(name: str) -> str:
        shares = results.busy_at_half.get(name, [])
        return f"{statistics.median(shares):.0%}" if shares else ""

    def holds(name: str) -> str:
        count, longest, answered = results.holds_at_half[name]
        return (f"{count * 100_000 / max(answered, 1):,.0f} ({count:,} in {answered:,}); "
                f"the longest {longest * 1000:.1f} ms")

    def latencies(run: Run) -> str:
        return (f"{run.percentile(0.5):.2f} / {run.percentile(0.99):.2f} / "
                f"{max(run.latencies_ms):.1f} ms")

    lines = [
        "## Policy listener",
        "",
        f"`python -m bench policy`{' --quick' if quick else ''}, run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}, {_cpu_model()}; "
        f"Python {platform.python_version()}. {scale.connections} persistent connections "
        f"with one Postfix request (29 attributes, a new message each) in flight on each, "
        f"{scale.senders} senders all cached; best of {scale.rounds} alternating "
        f"{scale.seconds:.0f} s runs. The reference is a 20-line asyncio policy server "
        "answering from a dict; cbv runs its real daemon (memory cache, site policy, one "
        "JSON log line per decision to a file) on asyncio's event loop, and again on "
        "uvloop (`cbv[speed]`), the three alternating round by round. Each server and the "
        "load generator run in processes of their own.",
        "",
        "| measurement | reference | cbv | cbv / reference |",
        "|---|---:|---:|---:|",
        f"| decisions per second, maximum | {ref.rate:,.0f} | {ours.rate:,.0f} | "
        f"**{results.ratio:.2f}** |",
        f"| server CPU per decision | {ref.server_cpu_us:.0f} µs | "
        f"{ours.server_cpu_us:.0f} µs | {cpu_ratio:.2f} |",
        f"| cbv on uvloop: decisions per second, maximum | | {uvloop.rate:,.0f} | "
        f"**{uvloop.rate / ref.rate:.2f}** |",
        f"| cbv on uvloop: server CPU per decision | | {uvloop.server_cpu_us:.0f} µs | "
        f"{uvloop.server_cpu_us / ref.server_cpu_us:.2f} |",
        f"| load generator busy during those runs | {ref.client_cpu_share:.0%} | "
        f"{ours.client_cpu_share:.0%} | |",
        f"| other load (cores busy with anything else, of {os.cpu_count()}) | "
        f"{ref.other_load:.2f} | {ours.other_load:.2f} | |",
        f"| p50 / p99 / max latency at {results.half_rate:,.0f}/s (half cbv's maximum), "
        f"median of {scale.latency_rounds} round(s) | {latencies(ref_half)} | "
        f"{latencies(cbv_half)} | |",
        f"| p99 of each half-rate round, in the order they ran | {p99s(results.reference_half)} "
        f"| {p99s(results.cbv_half)} | |",
        f"| server busy at that rate (its CPU over the wall time, of one core), median "
        f"round | {busy('reference')} | {busy('cbv')} | |",
        f"| callbacks that held the event loop over {HOLD_SECONDS * 1000:.0f} ms at that "
        "rate, per 100,000 answers (one more round, each callback timed) | "
        f"{holds('reference')} | {holds('cbv')} | |",
        f"| cbv on uvloop: p50 / p99 / max latency at the same rate, median round | | "
        f"{latencies(uvloop_half)} | |",
        f"| cbv on uvloop: p99 of each round; busy | | {p99s(results.uvloop_half)}; "
        f"{busy('uvloop')} | |",
        f"| RSS with {scale.idle:,} idle client connections | {_rss(results.reference_rss)} "
        f"| {_rss(results.cbv_rss)} | |",
        "",
        f"- Target: at least {MIN_RATE_RATIO:.0%} of the reference's throughput: {rate_ok} "
        f"({results.ratio:.1%}).",
        f"- Target: server CPU per decision at most {MAX_CPU_RATIO}x the reference's: "
        f"{cpu_ok} ({cpu_ratio:.2f}x).",
        f"- Target: p99 under {MAX_P99_MS:.0f} ms at half of cbv's maximum rate: {p99_ok} "
        f"({results.p99:.2f} ms, the median of {scale.latency_rounds} rounds taken in turn "
        "with the reference's and uvloop's, the order reversed every round; on uvloop "
        f"{uvloop_half.percentile(0.99):.2f} ms). Latency counts from when a request was due, "
        "so a server that falls behind is charged for the wait.",
        "- A callback that holds the event loop makes every request that comes meanwhile "
        "wait, however quiet the machine: they are counted in one more half-rate round per "
        "server on asyncio, with each callback timed (which costs each a little, so that "
        "round's latencies are not reported).",
        "- At half its maximum rate a server is busier than half the time: at the maximum, "
        "one wake-up of the event loop serves many requests; at half of it, nearly one each, "
        "and each wake-up costs the same whatever the server does. The busier a server "
        "is, the longer the queue a slow patch of the machine builds.",
        "- Rounds alternate between the servers so a change in the machine's load hits both; "
        "on a shared machine the steadier comparison is CPU per decision: fully CPU-bound, "
        f"cbv would answer {ref.server_cpu_us / ours.server_cpu_us:.0%} of the reference's "
        "rate.",
        f"- cbv's answers in its best run: {mix}; its decision log holds "
        f"{results.log_lines:,} lines for {results.cbv_decisions:,} decisions.",
    ]
    return "\n".join(lines)




def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench policy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    section = report(run(QUICK if args.quick else Scale()), args.quick)
    print(section)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_docs:
        write_docs_section("policy", section)
    return 0
