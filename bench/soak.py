"""`python -m bench soak [--seconds N]`: `cbv serve` under mixed load for N seconds, with its
RSS and open file descriptors sampled from /proc; exit status 1 unless both stay flat.

The load goes through the policy and smtpcbd listeners: cold callouts (a fresh address at
a zoo domain each time), cached decisions (the same senders again), and bad input
(garbage, oversized requests, clients that hang up in the middle of a request). A leak
shows as growth after the warm-up, so "flat" compares the last third of the samples taken
after it with the first third:

- RSS: the last third's median at most max(20 MB, 10%) above the first third's median;
- FDs: the last third's highest count at most 10 above the first third's median.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.helpers import raise_fd_limit
from cbv.testing import FakeDNS
from cbv.testing.zoo import SCENARIOS, start_zoo

CBV = Path(sys.executable).with_name("cbv")
WORKERS = {"cold": 4, "cached": 4, "smtpcbd": 4, "bad": 2}
PAUSE = 0.02  # seconds between one worker's requests: steady load, not a benchmark
RSS_SLACK_BYTES = 20 * 2**20
RSS_SLACK_RATIO = 0.10
FD_SLACK = 10
ANSWER_TIMEOUT = 15.0
CACHED = ("alice@accepted.zoo.test", "alice@unknown.zoo.test", "alice@catch-all.zoo.test")
COLD_DOMAINS = tuple(s.domain() for s in SCENARIOS if s.name not in ("tarpit", "bad-syntax"))
GARBAGE = (bytes(range(256)) * 4 + b"\n\n", b"sender=" + b"x" * 70_000 + b"\n\n",
           b"request=smtpd_access_policy\nsender=half")


@dataclass
class Sample:
    at: float  # seconds since the load started
    rss_mb: float
    fds: int


@dataclass
class SoakResult:
    seconds: float
    requests: int
    errors: int
    samples: list[Sample] = field(default_factory=list)
    warm_up: float = 0.0

    def steady(self) -> list[Sample]:
        return [s for s in self.samples if s.at >= self.warm_up]

    def thirds(self) -> tuple[list[Sample], list[Sample]]:
        steady = self.steady()
        third = max(1, len(steady) // 3)
        return steady[:third], steady[-third:]

    @property
    def rss_growth_mb(self) -> float:
        first, last = self.thirds()
        return (statistics.median(s.rss_mb for s in last)
                - statistics.median(s.rss_mb for s in first))

    @property
    def fd_growth(self) -> float:
        first, last = self.thirds()
        return max(s.fds for s in last) - statistics.median(s.fds for s in first)

    @property
    def flat(self) -> bool:
        first, _ = self.thirds()
        base = statistics.median(s.rss_mb for s in first)
        allowed = max(RSS_SLACK_BYTES / 2**20, base * RSS_SLACK_RATIO)
        return self.rss_growth_mb <= allowed and self.fd_growth <= FD_SLACK


def config_text(nameserver: str, port: int, cache_path: Path) -> str:
    """A realistic SQLite cache, loopback targets allowed, limits loose enough for the load.

    The memory tier keeps a fresh verdict for `memory_ttl`: at the default 30 s, a stream of
    cold callouts fills it for the first 30 s, which in a minute's run is after the
    warm-up, so the tier's own filling read as growth (17-20 MB of the 20 allowed). At 5 s
    it has its steady size before the warm-up ends, and what grows after it is a leak or
    a bounded memo still filling, not the tier."""
    return f"""
[server]
policy = "127.0.0.1:0"
smtpcbd = "127.0.0.1:0"
answer_within = 5.0
idle_timeout = 5.0

[dns]
nameservers = ["{nameserver}"]
timeout = 2.0

[callout]
port = {port}
helo_name = "verifier.soak.test"
connect_timeout = 1.0
command_timeout = 1.0
total_timeout = 3.0

[security]
allowed_target_networks = ["127.0.0.0/8"]

[cache]
path = "{cache_path}"
memory_ttl = 5.0

[limits]
domain_per_minute = 1000000
domain_burst = 100000
ip_per_minute = 1000000
ip_burst = 100000
network_per_minute = 1000000
network_burst = 100000
provider_per_minute = 1000000
provider_burst = 100000
"""


def sample(pid: int, since: float) -> Sample:
    with open(f"/proc/{pid}/status") as status:
        rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return Sample(round(time.monotonic() - since, 1), round(rss_kb / 1024, 1),
                  len(os.listdir(f"/proc/{pid}/fd")))


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class Load:
    """The clients: each worker loops until `stop` is set, counting requests and errors."""

    def __init__(self, policy: str, smtpcbd: str) -> None:
        self.policy = split_address(policy)
        self.smtpcbd = split_address(smtpcbd)
        self.stop = asyncio.Event()
        self.requests = 0
        self.errors = 0
        self._fresh = itertools.count()

    def fresh_address(self) -> str:
        n = next(self._fresh)
        return f"user{n}@{COLD_DOMAINS[n % len(COLD_DOMAINS)]}"

    async def policy_worker(self, cold: bool) -> None:
        reader, writer = await asyncio.open_connection(*self.policy)
        try:
            for n in itertools.count():
                if self.stop.is_set():
                    return
                sender = self.fresh_address() if cold else CACHED[n % len(CACHED)]
                writer.write(f"request=smtpd_access_policy\nprotocol_state=RCPT\n"
                             f"sender={sender}\nrecipient=bob@example.test\n\n".encode())
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    answer = await reader.readuntil(b"\n\n")
                self.count(answer.startswith(b"action="))
                await asyncio.sleep(PAUSE)
        finally:
            writer.close()

    async def smtpcbd_worker(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            sender = self.fresh_address() if n % 2 else CACHED[n % len(CACHED)]
            reader, writer = await asyncio.open_connection(*self.smtpcbd)
            try:
                writer.write(f"<{sender}>\n".encode())
                async with asyncio.timeout(ANSWER_TIMEOUT):
                    answer = await reader.readline()
                self.count(answer.split(b":", 1)[0] in (b"OK", b"FAIL", b"TEMPFAIL"))
            finally:
                writer.close()
            await asyncio.sleep(PAUSE)

    async def bad_worker(self) -> None:
        for n in itertools.count():
            if self.stop.is_set():
                return
            target = self.policy if n % 2 else self.smtpcbd
            reader, writer = await asyncio.open_connection(*target)
            writer.write(GARBAGE[n % len(GARBAGE)])
            if n % 3:
                writer.transport.abort()  # hang up mid-request
            else:
                writer.write_eof()
                try:
                    async with asyncio.timeout(ANSWER_TIMEOUT):
                        await reader.read()
                except ConnectionError:
                    pass  # closed on us with our garbage unread: as good as an answer
                writer.close()
            self.count(True)
            await asyncio.sleep(PAUSE * 5)

    def count(self, ok: bool) -> None:
        self.requests += 1
        self.errors += not ok

    def workers(self) -> list[asyncio.Task[None]]:
        runs = ([self.policy_worker(cold=True) for _ in range(WORKERS["cold"])]
                + [self.policy_worker(cold=False) for _ in range(WORKERS["cached"])]
                + [self.smtpcbd_worker() for _ in range(WORKERS["smtpcbd"])]
                + [self.bad_worker() for _ in range(WORKERS["bad"])])
        return [asyncio.create_task(run) for run in runs]


async def read_addresses(process: asyncio.subprocess.Process) -> dict[str, str]:
    """From the start-up lines: `cbv: NAME listening on ADDRESS (...)`."""
    assert process.stdout is not None
    addresses = {}
    async with asyncio.timeout(30):
        for _ in range(2):
            words = (await process.stdout.readline()).decode().split()
            addresses[words[1]] = words[4]
    return addresses


async def soak(seconds: float, every: float | None = None) -> SoakResult:
    """Runs the load for `seconds` against a fresh `cbv serve`, sampling it `every` seconds."""
    every = every if every is not None else max(1.0, seconds / 60)
    raise_fd_limit()
    with FakeDNS() as dns, tempfile.TemporaryDirectory(prefix="cbv-soak-") as tmp:
        async with await start_zoo(dns) as zoo:
            config = Path(tmp) / "cbv.toml"
            config.write_text(config_text(dns.nameserver, zoo.port, Path(tmp) / "cache.sqlite"))
            process = await asyncio.create_subprocess_exec(
                str(CBV), "serve", "--config", str(config), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL)
            try:
                addresses = await read_addresses(process)
                load = Load(addresses["policy"], addresses["smtpcbd"])
                result = SoakResult(seconds, 0, 0, warm_up=max(10.0, seconds / 6))
                started = time.monotonic()
                tasks = load.workers()
                while (elapsed := time.monotonic() - started) < seconds:
                    done = [t for t in tasks if t.done()]
                    if done:
                        done[0].result()  # a worker died: say why
                    if process.returncode is not None:
                        raise RuntimeError(f"cbv serve exited with {process.returncode}")
                    result.samples.append(sample(process.pid, started))
                    await asyncio.sleep(min(every, seconds - elapsed))
                load.stop.set()
                await asyncio.gather(*tasks)
                result.samples.append(sample(process.pid, started))
                result.requests, result.errors = load.requests, load.errors
                return result
            finally:
                if process.returncode is None:
                    process.terminate()
                    async with asyncio.timeout(30):
                        await process.wait()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0)
    args = parser.parse_args(argv)
    result = asyncio.run(soak(args.seconds))
    for s in result.samples:
        print(f"{s.at:7.1f}s  rss {s.rss_mb:7.1f} MB  fds {s.fds}")
    summary = {"seconds": result.seconds, "requests": result.requests, "errors": result.errors,
               "rss_growth_mb": round(result.rss_growth_mb, 1), "fd_growth": result.fd_growth,
               "flat": result.flat}
    print(json.dumps(summary))
    return 0 if result.flat and not result.errors else 1
