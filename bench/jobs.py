"""`python -m bench jobs [--quick] [--no-docs]`: bulk jobs on Redis Streams.

1. Throughput of a job with 1, 2 and 3 `cbv serve` workers sharing one redis-server we
   start, against a slow farm (every reply delayed, as real MX hosts are latency-bound),
   each worker verifying `concurrency` work items at once. The Redis cache is emptied
   before each run, so every run calls out for every address. Reported as ratios to one
   worker, measured in the same run.
2. The queue's own cost per work item, with no verification at all: submit, claim (the
   promote script, XAUTOCLAIM, XREADGROUP) and settle (the Lua script that acks, stores
   the final verdicts and counts), against the bare Streams round trip it is built on
   (pipelined XADD, XREADGROUP, XACK) on the same server, in alternating rounds.

Only loopback: our own redis-server, the FakeDNS and the bench's farm, each in a process
of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio

from bench.cache import start_redis
from bench.helpers import write_docs_section
from bench.job_fleet import Fleet, addresses
from cbv.cache_location import parse_cache_location
from cbv.jobs.model import Final, JobSpec, JobStatus
from cbv.jobs.redis_queue import RedisJobQueue
from cbv.jobs.service import work_items
from cbv.model import Reason, Result, Verdict, utcnow

CLAIM_AT_ONCE = 50
QUEUE_ROUNDS = 3


@dataclass(frozen=True)
class Scale:
    domains: int = 1000
    per_domain: int = 10
    hosts: int = 100
    farm_delay: float = 0.05  # seconds before each SMTP reply
    concurrency: int = 20  # work items in flight per worker
    queue_items: int = 5000

    @property
    def addresses(self) -> int:
        return self.domains * self.per_domain


QUICK = Scale(domains=200, hosts=40, queue_items=1000)


def job_run(directory: Path, url: str, scale: Scale, workers: int) -> dict[str, Any]:
    redis.Redis.from_url(url).flushall()
    jobs = f"concurrency = {scale.concurrency}\nlease = 30.0\n"
    fleet = Fleet(directory / f"w{workers}", url, scale.domains, scale.hosts, jobs=jobs,
                  farm_delay=scale.farm_delay)
    (directory / f"w{workers}").mkdir()
    try:
        fleet.start(workers)
        listing = addresses(scale.domains, scale.per_domain)
        started = time.monotonic()
        job_id = fleet.submit(listing)
        status = fleet.wait(job_id, timeout=900)
        elapsed = time.monotonic() - started
        stats = fleet.farm.stats()
    finally:
        fleet.stop()
    return {"workers": workers, "seconds": elapsed, "rate": len(listing) / elapsed,
            "done": status["done"], "sessions": stats["connections"]}


async def queue_round(url: str, scale: Scale, per_item: int) -> tuple[float, JobStatus]:
    """Seconds for the queue to carry `queue_items` items through, one worker; the job's
    status at the end."""
    queue = RedisJobQueue(parse_cache_location(url), keep=3600, lease=60)
    listing = [f"u{i:07d}@d{i // per_item:05d}.test" for i in range(scale.queue_items * per_item)]
    spec = JobSpec(id=f"bench{time.monotonic_ns()}", retry_delays=[300.0],
                   retry_horizon=3600.0, total=len(listing), created_at=time.time())
    verdict = Verdict(address="u0000000@d00000.test", result=Result.PASS,
                      reason=Reason.ACCEPTED, checked_at=utcnow())
    line = Final.of(0, verdict, 1).line
    items = work_items(spec.id, listing, per_item)
    started = time.perf_counter()
    await queue.submit(spec, items)
    settled = 0
    while settled < len(items):
        for claimed in await queue.claim(CLAIM_AT_ONCE, time.time()):
            finals = [Final(e.index, Result.PASS, line) for e in claimed.item.entries]
            await queue.settle(claimed, finals, [], time.time())
            settled += 1
    elapsed = time.perf_counter() - started
    status = await queue.status(spec.id, time.time())
    await queue.aclose()
    assert status is not None
    return elapsed, status


async def bare_round(url: str, scale: Scale, per_item: int) -> tuple[float, int]:
    """The same number of stream entries, each as big as an item, through bare
    XADD (pipelined as submit does), XREADGROUP and XACK; the seconds and the entries acked."""
    client = redis.asyncio.Redis.from_url(url)
    stream = f"bare{time.monotonic_ns()}"
    await client.xgroup_create(stream, "g", id="0", mkstream=True)
    payload = "x" * (40 * per_item)
    started = time.perf_counter()
    for start in range(0, scale.queue_items, 1000):
        pipe = client.pipeline(transaction=False)
        for _ in range(min(1000, scale.queue_items - start)):
            pipe.xadd(stream, {"item": payload})
        await pipe.execute()
    done = 0
    while done < scale.queue_items:
        read: Any = await client.xreadgroup("g", "c", {stream: ">"}, count=CLAIM_AT_ONCE)
        for _, entries in read or []:
            for entry_id, _fields in entries:
                done += await client.xack(stream, "g", entry_id)
    elapsed = time.perf_counter() - started
    await client.delete(stream)
    await client.aclose()
    return elapsed, done


async def queue_overhead(url: str, scale: Scale, per_item: int) -> dict[str, float]:
    queue_times, bare_times = [], []
    for _ in range(QUEUE_ROUNDS):
        bare_times.append((await bare_round(url, scale, per_item))[0])
        queue_times.append((await queue_round(url, scale, per_item))[0])
    return {"queue_us": min(queue_times) / scale.queue_items * 1e6,
            "bare_us": min(bare_times) / scale.queue_items * 1e6}


def run(scale: Scale, log: Any = print) -> dict[str, Any]:
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (scripts/install-test-deps)")
    with tempfile.TemporaryDirectory(prefix="cbv-bench-jobs-") as name:
        directory = Path(name)
        started = start_redis(directory)
        if started is None:
            raise SystemExit("redis-server did not start")
        process, port = started
        url = f"redis://127.0.0.1:{port}/0"
        try:
            runs = []
            for workers in (1, 2, 3):
                runs.append(job_run(directory, url, scale, workers))
                log(f"{workers} worker(s): {runs[-1]['rate']:.0f} addresses/s")
            overhead = asyncio.run(queue_overhead(url, scale, per_item=10))
        finally:
            process.terminate()
            process.wait(10)
    return {"runs": runs, "overhead": overhead}


def report(results: dict[str, Any], scale: Scale, command: str) -> str:
    runs = results["runs"]
    one = runs[0]["rate"]
    overhead = results["overhead"]
    lines = [
        "## Bulk jobs (Redis Streams)",
        "",
        f"`{command}` on {platform.node() or 'this machine'} ({os.cpu_count()} cores, shared), "
        f"{datetime.now(UTC):%Y-%m-%d}. One job of {scale.addresses:,} addresses over "
        f"{scale.domains:,} domains ({scale.per_domain} each, one SMTP session per domain), "
        f"{scale.hosts} farm hosts replying after {scale.farm_delay * 1000:.0f} ms each; "
        f"`[jobs] concurrency = {scale.concurrency}` per worker, default budgets, the Redis "
        "cache emptied before each run.",
        "",
        "| workers | seconds | addresses/s | ratio to one worker | sessions at the farm |",
        "|---:|---:|---:|---:|---:|",
    ]
    for entry in runs:
        lines.append(f"| {entry['workers']} | {entry['seconds']:.1f} | {entry['rate']:,.0f} | "
                     f"{entry['rate'] / one:.2f} | {entry['sessions']:,} |")
    per_address_queue = overhead["queue_us"] / 10
    lines += [
        "",
        f"Queue overhead, {scale.queue_items:,} work items of 10 addresses, one worker, best of "
        f"{QUEUE_ROUNDS} alternating rounds: {overhead['queue_us']:.0f} µs per item "
        f"({per_address_queue:.1f} µs per address) for submit + claim + settle, against "
        f"{overhead['bare_us']:.0f} µs for a bare pipelined XADD + XREADGROUP + XACK of an "
        f"entry as big: **{overhead['queue_us'] / overhead['bare_us']:.2f} times** the bare round "
        "trip (a settle also stores the item's ten result lines). A callout to a real MX "
        "takes tens to hundreds of milliseconds: the queue is "
        "not what bounds a job.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench jobs", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smaller job and queue run")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else Scale()
    started = time.monotonic()
    command = "python -m bench jobs" + (" --quick" if args.quick else "")
    section = report(run(scale, log=lambda text: print(text, file=sys.stderr)), scale, command)
    print(section)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_docs:
        write_docs_section("jobs", section)
    return 0
