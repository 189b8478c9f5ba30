"""`python -m bench egress [--quick]`: what a SOCKS5 proxy costs a callout.

One fast fake MX farm (its own process, 127.0.1.x), one microsocks (Debian's SOCKS5
server, started here on 127.0.0.1 and stopped by its pid), and cbv in a fresh process per
round, alternating direct and proxied rounds so both see the same machine. Each round
verifies the same addresses, one SMTP session each (no cache, no sharing), at a fixed
concurrency; the farm is named by `[callout] routes`, so no DNS is involved. Reported: the
proxied rate and latency as ratios of the direct ones, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench.helpers import (
    cpu_seconds,
    loopback_only,
    machine_busy_seconds,
    run_isolated,
    write_docs_section,
)
from bench.mx_farm import FarmProcess
from cbv.config import Config, config_from_dict
from cbv.engine.verifier import Verifier

HOSTS = ["127.0.1.1", "127.0.1.2"]
PHASE_TIMEOUT = 300.0
START_TIMEOUT = 10.0


def _config(port: int, proxy: str, concurrency: int) -> Config:
    callout: dict[str, Any] = {
        "helo_name": "verifier.bench.test", "port": port, "detect_catch_all": False,
        "routes": {f"d{i}.bench.test": [f"{ip}:{port}"] for i, ip in enumerate(HOSTS)},
    }
    if proxy:
        callout["proxy"] = proxy
    return config_from_dict({
        "callout": callout, "cache": {"url": "memory://"},
        "security": {"allowed_target_networks": ["127.0.0.0/8"]},
        "limits": {"domain_per_minute": 1_000_000, "domain_burst": 100_000,
                   "mx_concurrency": 10_000, "max_in_flight": concurrency},
    })


def measure(port: int, proxy: str, addresses: list[str], concurrency: int) -> dict[str, Any]:
    """One round in this (fresh) process: every address verified on its own session."""
    loopback_only({})

    async def verify_all() -> tuple[Counter[str], list[float]]:
        results: Counter[str] = Counter()
        latencies: list[float] = []
        queue = list(reversed(addresses))
        async with Verifier(_config(port, proxy, concurrency)) as verifier:
            async def worker() -> None:
                while queue:
                    address = queue.pop()
                    started = time.perf_counter()
                    verdict = await verifier.verify(address, use_cache=False)
                    latencies.append(time.perf_counter() - started)
                    results[verdict.result.value] += 1
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return results, latencies

    cpu_before, busy_before, started = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    results, latencies = asyncio.run(verify_all())
    wall = time.perf_counter() - started
    return {"wall": wall, "cpu": cpu_seconds() - cpu_before, "results": dict(results),
            "machine_busy": (machine_busy_seconds() - busy_before) / wall,
            "latency_ms": statistics.median(latencies) * 1000,
            "p95_ms": statistics.quantiles(latencies, n=20)[-1] * 1000}


def _start_microsocks() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("microsocks")
    if binary is None:
        raise SystemExit("microsocks is not installed (scripts/install-test-deps installs it)")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([binary, "-i", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, f"socks5://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.01)
    process.terminate()
    raise SystemExit("microsocks did not listen")


def run(count: int, concurrency: int, rounds: int, log: Any = print) -> dict[str, Any]:
    addresses = [f"u{n * 2}@d{n % len(HOSTS)}.bench.test" for n in range(count)]
    farm = FarmProcess(HOSTS, (0,), lifetime=PHASE_TIMEOUT * rounds * 2)
    proxy_process, proxy = _start_microsocks()
    rows: dict[str, list[dict[str, Any]]] = {"direct": [], "socks5": []}
    try:
        for round_number in range(rounds):
            for mode, url in (("direct", ""), ("socks5", proxy)):
                result = run_isolated(measure, farm.port, url, addresses, concurrency,
                                      timeout=PHASE_TIMEOUT)
                rows[mode].append(result)
                log(f"round {round_number + 1} {mode}: {count / result['wall']:,.0f}/s, "
                    f"median {result['latency_ms']:.2f} ms, {result['results']}")
    finally:
        proxy_process.terminate()
        proxy_process.wait(5)
        farm.stop()
    return rows


def _paired(rows: dict[str, list[dict[str, Any]]],
            figure: Callable[[dict[str, Any]], float]) -> float:
    """The median over rounds of proxied / direct, each round against its own direct run."""
    return statistics.median(figure(socks) / figure(direct)
                             for direct, socks in zip(rows["direct"], rows["socks5"], strict=True))


def report(rows: dict[str, list[dict[str, Any]]], count: int, concurrency: int, rounds: int,
           command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Egress: a callout through a local SOCKS5 proxy",
        "",
        f"`{command}`, run {when}; {count} addresses, one SMTP session each (no cache, no "
        f"session sharing), {concurrency} at once, {rounds} alternating rounds (direct, then "
        "proxied), each in a fresh process. The proxy is Debian's microsocks on loopback, the "
        "MX a fast fake farm in its own process; the figures say what the extra hop costs "
        "cbv, not what a real proxy across a network would.",
        "",
        "| round | egress | callouts/s | median ms | p95 ms | CPU ms per callout | "
        "machine busy (cores) |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for number, (direct, socks) in enumerate(zip(rows["direct"], rows["socks5"],
                                                 strict=True), start=1):
        for name, row in (("direct", direct), ("socks5", socks)):
            lines.append(f"| {number} | {name} | {count / row['wall']:,.0f} | "
                         f"{row['latency_ms']:.2f} | {row['p95_ms']:.2f} | "
                         f"{row['cpu'] / count * 1000:.3f} | {row['machine_busy']:.1f} |")
    verdicts = {str(row["results"]) for mode in rows.values() for row in mode}
    lines += [
        "",
        f"- cbv's CPU per callout through the proxy: **{_paired(rows, lambda r: r['cpu']):.2f}x**"
        " the direct one (median of the rounds' ratios): the SOCKS5 greeting and CONNECT "
        "exchange before each SMTP banner. This is the figure to trust on a busy machine.",
        f"- Rate **{_paired(rows, lambda r: 1 / r['wall']):.2f}x**, median latency "
        f"**{_paired(rows, lambda r: r['latency_ms']):.2f}x** the direct ones; wall-clock "
        "figures move with whatever else the machine runs (the last column: all cores' busy "
        "time over the round's wall time, ours included).",
        f"- Verdicts were {'the same' if len(verdicts) == 1 else 'NOT the same'} in every "
        f"round: {', '.join(sorted(verdicts))}.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench egress")
    parser.add_argument("--quick", action="store_true", help="a small run; docs untouched")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    count, rounds = (100, 1) if args.quick else (args.count, args.rounds)
    rows = run(count, args.concurrency, rounds)
    text = report(rows, count, args.concurrency, rounds,
                  "python -m bench egress " + " ".join(argv))
    print(text)
    if not args.quick:
        write_docs_section("egress", text)
    return 0
