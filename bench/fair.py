"""`python -m bench fair [--requests N] [--no-docs]`: can one client starve the others?

A fresh `cbv serve` (policy, smtpcbd and milter listeners, JSON logs on stderr) is
attacked, on each event loop it supports, by
- 4 connections each pipelining `--requests` (10,000) cached policy requests and reading
  every answer,
- one more that pipelines as many and resets the connection without reading any,
- 200 milter connections each starting a 1 MiB packet and stalling,
while a well-behaved client asks a cached sender every 50 ms. Recorded: the well-behaved
client's slowest and median answer, the daemon's RSS growth (peak during the attack over
the level before it), whether every stderr line is JSON, what the resetting client cost
in log lines, and how many stalled milter connections the daemon closed. The figures go
to docs/security.md ("Fair listeners"); tests/servers/test_fairness.py runs the same
scenario and asserts only robust bounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.helpers import raise_fd_limit, run_isolated, write_docs_section
from cbv.testing import FakeDNS
from cbv.testing.zoo import start_zoo

CBV = Path(sys.executable).with_name("cbv")
SECURITY_DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"
LOOPS = ("asyncio", "uvloop")
FLOODERS = 4
STALLED_MILTERS = 200
STALLED_PACKET = 1 << 20  # the length each stalled milter packet announces
STALLED_SENT = 60_000  # bytes of it actually sent before stalling
GOOD_EVERY = 0.05
CACHED = "alice@accepted.zoo.test"
WAIT = 60.0


@dataclass
class FairRun:
    event_loop: str
    requests: int
    seconds: float = 0.0
    flood_answers: int = 0
    good_delays: list[float] = field(default_factory=list)
    rss_before_mb: float = 0.0
    rss_peak_mb: float = 0.0
    stderr_lines: int = 0
    not_json: list[str] = field(default_factory=list)
    gone_lines: int = 0
    asyncio_lines: int = 0
    milter_closed: int = 0

    @property
    def slowest_ms(self) -> float:
        return max(self.good_delays) * 1000

    @property
    def median_ms(self) -> float:
        return statistics.median(self.good_delays) * 1000

    @property
    def rss_growth_mb(self) -> float:
        return self.rss_peak_mb - self.rss_before_mb


def config_text(nameserver: str, port: int, event_loop: str) -> str:
    return f"""
[server]
policy = "127.0.0.1:0"
smtpcbd = "127.0.0.1:0"
milter = "127.0.0.1:0"
event_loop = "{event_loop}"

[log]
format = "json"

[dns]
nameservers = ["{nameserver}"]

[callout]
port = {port}
helo_name = "verifier.fair.test"

[security]
allowed_target_networks = ["127.0.0.0/8"]

[cache]
url = "memory://"
"""


def policy_request(sender: str) -> bytes:
    return (f"request=smtpd_access_policy\nprotocol_state=RCPT\nsender={sender}\n"
            f"recipient=bob@example.test\nclient_address=192.0.2.7\n\n").encode()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


async def read_addresses(process: asyncio.subprocess.Process, count: int) -> dict[str, str]:
    """From the start-up lines: `cbv: NAME listening on ADDRESS (...)`."""
    assert process.stdout is not None
    addresses = {}
    async with asyncio.timeout(WAIT):
        for _ in range(count):
            words = (await process.stdout.readline()).decode().split()
            addresses[words[1]] = words[4]
    return addresses


class Attack:
    def __init__(self, addresses: dict[str, str], requests: int) -> None:
        self.policy = split_address(addresses["policy"])
        self.milter = split_address(addresses["milter"])
        self.requests = requests
        self.done = asyncio.Event()
        self.answers = 0

    async def good_client(self, delays: list[float]) -> None:
        reader, writer = await asyncio.open_connection(*self.policy)
        request = policy_request(CACHED)
        try:
            while not self.done.is_set():
                started = time.monotonic()
                writer.write(request)
                async with asyncio.timeout(WAIT):
                    answer = await reader.readuntil(b"\n\n")
                delays.append(time.monotonic() - started)
                if answer != b"action=DUNNO\n\n":
                    raise AssertionError(f"well-behaved client answered {answer!r}")
                await asyncio.sleep(GOOD_EVERY)
        finally:
            writer.close()

    async def flood(self) -> None:
        reader, writer = await asyncio.open_connection(*self.policy)
        per_write = min(1000, self.requests)
        batch = policy_request(CACHED) * per_write
        writes = self.requests // per_write

        async def send() -> None:
            for _ in range(writes):
                writer.write(batch)
                await writer.drain()

        sender = asyncio.create_task(send())
        async with asyncio.timeout(WAIT):
            for _ in range(writes * per_write):
                await reader.readuntil(b"\n\n")
                self.answers += 1
        await sender
        writer.close()

    async def flood_and_reset(self) -> None:
        """Pipelines its requests, reads none, and resets: nothing left to answer to."""
        _, writer = await asyncio.open_connection(*self.policy)
        writer.write(policy_request(CACHED) * self.requests)
        try:
            async with asyncio.timeout(0.5):
                await writer.drain()
        except TimeoutError:
            pass  # the daemon stopped reading: its queue is full
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    async def stalled_milter(self) -> bool:
        """Starts a packet far over the limit and stalls; True if the daemon hangs up."""
        reader, writer = await asyncio.open_connection(*self.milter)
        try:
            writer.write(struct.pack(">I", STALLED_PACKET + 1) + b"H" + bytes(STALLED_SENT))
            async with asyncio.timeout(WAIT):
                while await reader.read(65536):
                    pass
            return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False
        finally:
            writer.close()


def attack_alone(addresses: dict[str, str], requests: int) -> tuple[int, int, float]:
    """The flood, the reset and the stalled milters: (answers read, milter connections the
    daemon closed, seconds)."""
    return asyncio.run(_attack(Attack(addresses, requests)))


async def _attack(attack: Attack) -> tuple[int, int, float]:
    raise_fd_limit()
    started = time.monotonic()
    milters = [asyncio.create_task(attack.stalled_milter()) for _ in range(STALLED_MILTERS)]
    await asyncio.gather(attack.flood_and_reset(), *(attack.flood() for _ in range(FLOODERS)))
    closed = sum(await asyncio.gather(*milters))
    return attack.answers, closed, time.monotonic() - started


async def sample_peak(pid: int, until: asyncio.Event, run: FairRun) -> None:
    while not until.is_set():
        run.rss_peak_mb = max(run.rss_peak_mb, rss_mb(pid))
        await asyncio.sleep(0.02)


async def collect_stderr(process: asyncio.subprocess.Process, run: FairRun) -> None:
    assert process.stderr is not None
    async for raw in process.stderr:
        run.stderr_lines += 1
        try:
            entry = json.loads(raw)
        except ValueError:
            run.not_json.append(raw.decode(errors="replace").rstrip("\n"))
            continue
        if not isinstance(entry, dict):
            run.not_json.append(raw.decode(errors="replace").rstrip("\n"))
        elif entry.get("event") == "client gone, its answers dropped":
            run.gone_lines += 1
        elif entry.get("logger") == "asyncio":
            run.asyncio_lines += 1


async def fair_run(event_loop: str, requests: int = 10_000) -> FairRun:
    """One `cbv serve` on `event_loop`, attacked as the module says."""
    raise_fd_limit()
    run = FairRun(event_loop, requests)
    with FakeDNS() as dns, tempfile.TemporaryDirectory(prefix="cbv-fair-") as tmp:
        async with await start_zoo(dns) as zoo:
            config = Path(tmp) / "cbv.toml"
            config.write_text(config_text(dns.nameserver, zoo.port, event_loop))
            process = await asyncio.create_subprocess_exec(
                str(CBV), "serve", "--config", str(config), stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            stderr = asyncio.create_task(collect_stderr(process, run))
            try:
                addresses = await read_addresses(process, 3)
                attack = Attack(addresses, requests)
                warm: list[float] = []
                attack.done.set()
                await attack.good_client(warm)  # one answer: the sender is cached
                attack.done.clear()
                run.rss_before_mb = run.rss_peak_mb = rss_mb(process.pid)
                watchers = [asyncio.create_task(sample_peak(process.pid, attack.done, run)),
                            asyncio.create_task(attack.good_client(run.good_delays))]
                try:
                    # The attackers in a process of their own: reading 40,000 answers must
                    # not delay the well-behaved client's own event loop.
                    run.flood_answers, run.milter_closed, run.seconds = await asyncio.to_thread(
                        run_isolated, attack_alone, addresses, requests, timeout=WAIT * 2)
                finally:
                    attack.done.set()
                    await asyncio.gather(*watchers)
            finally:
                if process.returncode is None:
                    process.terminate()
                    async with asyncio.timeout(WAIT):
                        await process.wait()
                await stderr
    return run


HEADER = ("| event loop | flood answered | well-behaved client: slowest answer | RSS growth "
          "| stderr lines | \"client gone\" lines | stalled milters closed |\n"
          "|---|---|---|---|---|---|---|")


def section(runs: list[FairRun]) -> str:
    rows = "\n".join(
        f"| {r.event_loop} | {r.flood_answers:,} in {r.seconds:.1f} s | {r.slowest_ms:.0f} ms "
        f"(median {r.median_ms:.1f} ms, {len(r.good_delays)} answers) | "
        f"{r.rss_growth_mb:.1f} MB | {r.stderr_lines:,}, {len(r.not_json)} not JSON | "
        f"{r.gone_lines} | {r.milter_closed} of {STALLED_MILTERS} |"
        for r in runs)
    requests = runs[0].requests if runs else 0
    return f"""\
`python -m bench fair`: {FLOODERS} connections each pipelining {requests:,} cached policy
requests (and reading the answers), one more pipelining {requests:,} and resetting without
reading, and {STALLED_MILTERS} milter connections each announcing a 1 MiB packet and stalling,
all at once against one `cbv serve`, while a well-behaved client asks a cached sender
every 50 ms. One run per event loop, on a 2-core machine shared with other work.

{HEADER}
{rows}"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench fair", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--no-docs", action="store_true", help="do not write docs/security.md")
    args = parser.parse_args(argv)
    runs = [asyncio.run(fair_run(loop, args.requests)) for loop in LOOPS]
    text = section(runs)
    print(text)
    for run in runs:
        for line in run.not_json[:5]:
            print(f"{run.event_loop}: not JSON: {line}")
    if not args.no_docs:
        write_docs_section("fair", text, SECURITY_DOC)
    return 0 if all(not r.not_json for r in runs) else 1
