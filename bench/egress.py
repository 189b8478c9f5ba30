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
from datetime import UTC, datetime
from typing import Any

from bench.helpers import cpu_seconds, loopback_only, run_isolated, write_docs_section
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

    cpu_before, started = cpu_seconds(), time.perf_counter()
    results, latencies = asyncio.run(verify_all())
    wall = time.perf_counter() - started
    return {"wall": wall, "cpu": cpu_seconds() - cpu_before, "results": dict(results),
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


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return min(rows, key=lambda row: row["wall"])


def report(rows: dict[str, list[dict[str, Any]]], count: int, concurrency: int, rounds: int,
           command: str) -> str:
    direct, socks = _best(rows["direct"]), _best(rows["socks5"])
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Egress: a callout through a local SOCKS5 proxy",
        "",
        f"`{command}`, run {when}; {count} addresses, one SMTP session each (no cache, no "
        f"session sharing), {concurrency} at once, best of {rounds} alternating rounds, each "
        "in a fresh process. The proxy is Debian's microsocks on loopback, the MX a fast fake "
        "farm in its own process; the figures are ratios measured in the same run, so they "
        "say what the extra hop costs, not what a real proxy across a network would.",
        "",
        "| egress | callouts/s | median ms | p95 ms | CPU ms per callout |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in (("direct", direct), ("socks5 (microsocks)", socks)):
        lines.append(f"| {name} | {count / row['wall']:,.0f} | {row['latency_ms']:.2f} | "
                     f"{row['p95_ms']:.2f} | {row['cpu'] / count * 1000:.3f} |")
    lines += [
        "",
        f"- Through the proxy: **{(count / socks['wall']) / (count / direct['wall']):.2f}x** "
        f"the direct rate, **{socks['latency_ms'] / direct['latency_ms']:.2f}x** its median "
        f"latency, **{socks['cpu'] / direct['cpu']:.2f}x** cbv's CPU per callout (the "
        "handshake: greeting, CONNECT, one extra round trip before the SMTP banner).",
        f"- Verdicts, best rounds: direct {direct['results']}, proxied {socks['results']}.",
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
