"""`python -m bench cache [--quick] [--no-docs]`: cached verifications per second.

In one process and one run, over the same addresses, each verdict already cached:

1. floor: a plain dict lookup plus `Verdict.model_dump_json()`, the least a cached answer
   can cost in Python;
2. `await Verifier.verify(address)` plus the same serialisation, with the memory, SQLite
   (memory tier warm, then cold: every hit read from the file) and Redis backends;
3. for Redis, our own redis-server on a loopback port: redis-py's bare GET of the same
   records in this process, and `redis-benchmark` GET on the same server, one connection
   and 50 connections, to show whether Redis or our code sets the pace.

Nothing is dialled: every verdict is a hit, and the DNS is pointed at a closed loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio

from bench.helpers import BENCHMARKS_DOC, write_docs_section
from cbv.address import parse_address
from cbv.cache.records import CachedVerdict, Lifetimes
from cbv.cache.redis_link import KeyScheme
from cbv.config import Config, config_from_dict
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.model import Reason, Result, SmtpReply, Stage, Verdict, utcnow

CONCURRENCY = 50
ROUNDS = 3
REDIS_ROUNDS = 7  # the round trip is the noisiest figure on a shared machine
MIN_SQLITE_FLOOR_RATIO = 0.50


@dataclass(frozen=True)
class Scale:
    addresses: int
    redis_addresses: int


FULL = Scale(addresses=50_000, redis_addresses=20_000)
QUICK = Scale(addresses=2_000, redis_addresses=1_000)


def sample_verdict(address: str) -> Verdict:
    return Verdict(
        address=address,
        result=Result.PASS,
        reason=Reason.ACCEPTED,
        catch_all=False,
        mx="mx1.example.test",
        ip="192.0.2.25",
        port=25,
        stage=Stage.RCPT,
        reply=SmtpReply(code=250, enhanced="2.1.5", text="Ok"),
        sender="",
        checked_at=utcnow(),
        duration_ms=85.2,
    )


def records(addresses: list[str]) -> list[CachedVerdict]:
    lifetimes = Lifetimes(pass_ttl=86_400, pass_refresh=86_400, fail_ttl=3_600,
                          transient_ttl=300, unknown_ttl=3_600)
    now = time.time()
    made = [lifetimes.record(sample_verdict(address), now) for address in addresses]
    return [record for record in made if record is not None]


def bench_config(url: str) -> Config:
    return config_from_dict({
        "dns": {"nameservers": ["127.0.0.1:1"], "timeout": 1.0},
        "callout": {"helo_name": "bench.cbv.test"},
        "cache": {"url": url, "memory_entries": 1_000_000, "memory_ttl": 3_600.0},
    }, "bench")


def best_rate(count: int, run: Callable[[], None]) -> float:
    best = min(_timed(run) for _ in range(ROUNDS))
    return count / best


def _timed(run: Callable[[], None]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


async def best_rate_async(count: int, run: Callable[[], Awaitable[None]]) -> float:
    timings = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        await run()
        timings.append(time.perf_counter() - started)
    return count / min(timings)


def floor_rate(addresses: list[str]) -> float:
    """The same verdicts the cache serves (cached, with expires_at), in a plain dict."""
    store = {record.address: record.verdict for record in records(addresses)}

    def run() -> None:
        for address in addresses:
            store[address].model_dump_json()

    return best_rate(len(addresses), run)


async def sequential(verifier: Verifier, addresses: list[str]) -> None:
    for address in addresses:
        verdict = await verifier.verify(address)
        verdict.model_dump_json()
        assert verdict.cached


async def concurrent(verifier: Verifier, addresses: list[str]) -> None:
    chunk = len(addresses) // CONCURRENCY

    async def worker(part: list[str]) -> None:
        await sequential(verifier, part)

    await asyncio.gather(*(worker(addresses[i * chunk:(i + 1) * chunk])
                           for i in range(CONCURRENCY)))


async def verifier_rates(url: str, addresses: list[str]) -> dict[str, float]:
    """Hits with one request at a time, and with CONCURRENCY at a time."""
    rates: dict[str, float] = {}
    async with Verifier(assemble(bench_config(url))) as verifier:
        for record in records(addresses):
            await verifier.cache.put(record)
        await verifier.flush()
        rates["sequential"] = await best_rate_async(
            len(addresses), lambda: sequential(verifier, addresses))
        rates["concurrent"] = await best_rate_async(
            len(addresses) // CONCURRENCY * CONCURRENCY,
            lambda: concurrent(verifier, addresses))
    return rates


async def sqlite_cold_rate(url: str, addresses: list[str]) -> float:
    """Every hit read from the file: the memory tier is off."""
    config = bench_config(url)
    cold = config.model_copy(update={"cache": config.cache.model_copy(
        update={"memory_ttl": 0.0})})
    async with Verifier(assemble(cold)) as verifier:
        return await best_rate_async(len(addresses), lambda: sequential(verifier, addresses))


async def redis_rates(url: str, addresses: list[str]) -> dict[str, float]:
    """cbv's hits and redis-py's bare GET of the same records, in alternating rounds, so
    whatever else the machine does weighs on both alike."""
    keys = KeyScheme()
    names = [keys.record(parse_address(a).domain, a) for a in addresses]
    client = redis.asyncio.Redis.from_url(url)
    timings: dict[str, list[float]] = {"sequential": [], "redis-py GET": [], "concurrent": []}

    async def bare_gets() -> None:
        for name in names:
            await client.get(name)

    try:
        async with Verifier(assemble(bench_config(url))) as verifier:
            for record in records(addresses):
                await verifier.cache.put(record)
            runs: dict[str, Callable[[], Awaitable[None]]] = {
                "sequential": lambda: sequential(verifier, addresses),
                "redis-py GET": bare_gets,
                "concurrent": lambda: concurrent(verifier, addresses),
            }
            for _ in range(REDIS_ROUNDS):
                for key, run in runs.items():
                    started = time.perf_counter()
                    await run()
                    timings[key].append(time.perf_counter() - started)
    finally:
        await client.aclose()
    done = len(addresses) // CONCURRENCY * CONCURRENCY
    return {key: (done if key == "concurrent" else len(addresses)) / min(values)
            for key, values in timings.items()}


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(directory)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.02)
    process.kill()
    return None


def redis_benchmark_get(port: int, clients: int, requests: int) -> float | None:
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    output = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "-t", "get", "-n", str(requests),
         "-c", str(clients), "-q"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    found = re.search(r"GET: ([\d.]+) requests per second", output)
    return float(found.group(1)) if found else None


async def measure(scale: Scale) -> dict[str, float | None]:
    addresses = [f"user{n}@domain{n % 100}.test" for n in range(scale.addresses)]
    results: dict[str, float | None] = {"floor": floor_rate(addresses)}
    memory = await verifier_rates("memory://", addresses)
    results["memory"], results["memory concurrent"] = memory["sequential"], memory["concurrent"]
    with tempfile.TemporaryDirectory(prefix="cbv-bench-") as directory:
        url = f"sqlite://{directory}/cache.sqlite3"
        sqlite = await verifier_rates(url, addresses)
        results["sqlite"], results["sqlite concurrent"] = sqlite["sequential"], sqlite[
            "concurrent"]
        results["sqlite cold"] = await sqlite_cold_rate(url, addresses[: scale.redis_addresses])
        started = start_redis(Path(directory))
        if started is not None:
            process, port = started
            try:
                url = f"redis://127.0.0.1:{port}/0"
                few = addresses[: scale.redis_addresses]
                measured = await redis_rates(url, few)
                results["redis"] = measured["sequential"]
                results["redis concurrent"] = measured["concurrent"]
                results["redis-py GET"] = measured["redis-py GET"]
                results["redis-benchmark GET c=1"] = redis_benchmark_get(port, 1, len(few))
                results[f"redis-benchmark GET c={CONCURRENCY}"] = redis_benchmark_get(
                    port, CONCURRENCY, len(few) * 5)
            finally:
                process.terminate()
                process.wait(10)
    return results


def report(results: dict[str, float | None], scale: Scale, command: str) -> str:
    floor = results["floor"] or 1.0

    def row(label: str, key: str, what: str) -> str:
        rate = results.get(key)
        if rate is None:
            return f"| {label} | not measured | | {what} |"
        return f"| {label} | {rate:,.0f} | {1e6 / rate:.1f} | {rate / floor:.0%} | {what} |"

    lines = [
        "## Cache",
        "",
        f"`{command}`, {scale.addresses:,} cached addresses ({scale.redis_addresses:,} for "
        "Redis and cold SQLite), best of "
        f"{ROUNDS} rounds ({REDIS_ROUNDS} for Redis, alternating with redis-py's bare GET), "
        "one process on this machine (2 cores). Each operation is "
        "`await verifier.verify(address)` of a cached address plus `model_dump_json()` of "
        "the verdict; \"concurrent\" runs "
        f"{CONCURRENCY} such loops at once. The floor is a plain dict lookup plus the same "
        "serialisation.",
        "",
        "| measurement | per second | µs each | of the floor | what it is |",
        "|---|---:|---:|---:|---|",
        row("floor", "floor", "dict lookup + `model_dump_json()`"),
        row("memory", "memory", "`memory://`"),
        row("memory, concurrent", "memory concurrent", "`memory://`"),
        row("SQLite", "sqlite", "memory tier warm (the daemon's steady state)"),
        row("SQLite, concurrent", "sqlite concurrent", "memory tier warm"),
        row("SQLite, cold", "sqlite cold", "`memory_ttl = 0`: every hit read from the file"),
        row("Redis", "redis", "one request at a time: one GET round trip each"),
        row("Redis, concurrent", "redis concurrent", f"{CONCURRENCY} requests at a time"),
        row("redis-py GET alone", "redis-py GET", "the same GETs, no cbv code"),
        row("redis-benchmark GET, 1 client", "redis-benchmark GET c=1", "C client, same server"),
        row(f"redis-benchmark GET, {CONCURRENCY} clients",
            f"redis-benchmark GET c={CONCURRENCY}", "C client, same server"),
    ]
    sqlite = results.get("sqlite") or 0.0
    verdict = "met" if sqlite / floor >= MIN_SQLITE_FLOOR_RATIO else "NOT met"
    lines += ["", f"- Target: SQLite-backed hits at least {MIN_SQLITE_FLOOR_RATIO:.0%} of the "
              f"floor: {verdict} ({sqlite / floor:.0%})."]
    redis_rate, redis_py = results.get("redis"), results.get("redis-py GET")
    c_client = results.get("redis-benchmark GET c=1")
    if redis_rate and redis_py:
        ours = 1e6 / redis_rate - 1e6 / redis_py
        lines.append(
            f"- Redis: of the {1e6 / redis_rate:.0f} µs a cached verify takes, "
            f"{1e6 / redis_py:.0f} µs ({redis_rate / redis_py:.0%}) is redis-py's own GET "
            f"round trip and {ours:.0f} µs is cbv (key, decoding the verdict, the fallback "
            "guard, serialising the answer): "
            + ("the round trip sets the pace, not our code." if redis_rate / redis_py >= 0.5
               else "in this run cbv's share was the larger one.")
        )
    if redis_py and c_client:
        lines.append(
            f"- The same GET from `redis-benchmark` (C, one connection) takes "
            f"{1e6 / c_client:.0f} µs: most of the round trip is the Python client's, "
            "not the server's."
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench cache", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few addresses, no docs")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"do not update {BENCHMARKS_DOC.name}")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    started = time.perf_counter()
    results = asyncio.run(measure(scale))
    section = report(results, scale, " ".join(["python -m bench cache", *argv]))
    print(section)
    if not (args.quick or args.no_docs):
        write_docs_section("cache", section)
        print(f"\nwrote the 'Cache' section of {BENCHMARKS_DOC}")
    print(f"\ntotal {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0
