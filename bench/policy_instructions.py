"""Instructions per cached policy decision, counted by cachegrind: what one Postfix request
costs cbv's own code, whatever the machine's other load.

`python -m bench policy` times the listener's CPU against the dict reference over
sockets, and on a shared machine its rounds move by ±15%: a change worth 5% of a decision
cannot be told from the noise there. Here each measurement is a fresh process under
`valgrind --tool=cachegrind`: the policy listener's connection (`PolicyConnection`) is
fed the benchmark's requests on a stand-in transport, every sender's verdict cached
first, the JSON decision log written to a file as `cbv serve` writes it. Run at two sizes,
the figure is the difference over the difference in decisions, so start-up, imports and
the warm-up fall out. The first-level cache misses are cachegrind's model of them. The
garbage collector is off while the decisions are made: when it runs depends on how many
objects were made since it last ran, not on the decision, and its runs moved the figure
by ±2 k instructions from one size to another. Its share is in `bench policy`'s CPU.

What it does not count: the event loop's turn and the socket's system calls (no sockets
here), the kernel's work, the writer thread's `write`. It measures a change to the
decision's own path, not the target of issue 15, which is CPU time against the reference.

`--src DIR` (repeatable) measures cbv from other source trees as well, each a row.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from bench.callout import machine
from bench.instructions import (
    Counted,
    counting_parser,
    measured_and_written,
    under_cachegrind,
)
from bench.policy import Scale
from bench.policy_load import requests_for
from bench.policy_servers import bench_config


@dataclass(frozen=True)
class Sizes:
    small: int  # decisions in the smaller run
    big: int


DEFAULT = Sizes(small=1000, big=3000)
SENDERS = Scale().sender_list()  # the policy benchmark's: half pass, half fail


@dataclass(frozen=True)
class PerDecision:
    instructions: float
    i1_misses: float
    d1_misses: float


class StandInTransport:
    """What the connection writes to, counted: the answers."""

    def __init__(self) -> None:
        self.answers = 0

    def write(self, data: bytes) -> None:
        self.answers += 1

    def pause_reading(self) -> None:
        """Never asked: one request at a time never fills the queue."""

    def resume_reading(self) -> None:
        """As `pause_reading`."""

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        """Nothing to close."""

    def abort(self) -> None:
        """Nothing to abort."""


async def decide(decisions: int, big: int, log: TextIO) -> int:
    """`decisions` cached policy decisions, as the listener makes them, logged into `log`;
    how many were answered at once. Every run builds `big` requests, so building them
    falls out, and first answers one per sender, so that what a decision's first answer
    makes once (its Postfix answer, its line's fields) is made at any size."""
    from cbv.config import LogConfig
    from cbv.providers import read_suffix_list
    from cbv.servers.connection import ConnectionTracker
    from cbv.servers.logs import configure_logging
    from cbv.servers.metrics import Telemetry
    from cbv.servers.postfix import PolicyConnection
    from cbv.servers.runtime import Generation, Runtime

    read_suffix_list()  # as the daemon does as it starts
    async with bench_config({"policy": "127.0.0.1:0", "smtpcbd": ""}) as config:
        configure_logging(LogConfig(format="json"), log)
        telemetry = Telemetry()
        runtime = Runtime(Generation(config, telemetry), telemetry)
        for sender in SENDERS:
            await runtime.generation.verifier.verify(sender)
        requests = requests_for(SENDERS, len(SENDERS) + big)
        gc.collect()
        gc.freeze()
        gc.disable()  # when it would run depends on the allocation count, not the decision
        connection = PolicyConnection(runtime, ConnectionTracker())
        transport = StandInTransport()
        connection.connection_made(transport)  # type: ignore[arg-type]
        for request in requests[:len(SENDERS) + decisions]:
            connection.data_received(request)
        answered = transport.answers - len(SENDERS)
        connection.connection_lost(None)
        await runtime.close(1.0)
    return answered


def child(argv: list[str]) -> int:
    """One measurement, run under valgrind: prints how many decisions it made."""
    decisions, big = map(int, argv)
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "decisions.log", "w",
                                                    encoding="utf-8") as log:
        answered = asyncio.run(decide(decisions, big, log))
        for handler in logging.getLogger("cbv").handlers:
            handler.close()  # what is left of the log written before its file closes
    if answered != decisions:
        print(f"only {answered} of {decisions} requests answered at once", file=sys.stderr)
        return 1
    print(f"decisions {answered}")
    return 0


def counted(src: Path, decisions: int, sizes: Sizes) -> Counted:
    done = under_cachegrind(["bench.policy_instructions", "--child", str(decisions),
                             str(sizes.big)], src, "cbv", cache_sim=True)
    if re.search(rf"^decisions {decisions}$", done.stdout, re.MULTILINE) is None:
        raise RuntimeError(f"cbv from {src} under valgrind failed: no count of decisions")
    return done


def per_decision(small: Counted, big: Counted, sizes: Sizes) -> PerDecision:
    """What the bigger run did beyond the smaller one, per decision."""
    more = sizes.big - sizes.small
    return PerDecision((big.instructions - small.instructions) / more,
                       (big.i1_misses - small.i1_misses) / more,
                       (big.d1_misses - small.d1_misses) / more)


def run(sources: list[Path], sizes: Sizes) -> dict[Path, PerDecision]:
    found: dict[Path, PerDecision] = {}
    for src in sources:
        print(f"counting cbv from {src} ...")
        small, big = (counted(src, decisions, sizes) for decisions in (sizes.small, sizes.big))
        found[src] = per_decision(small, big, sizes)
    return found


def report(found: dict[Path, PerDecision], sizes: Sizes, command: str, elapsed: float
           ) -> str:
    first = next(iter(found.values()))
    lines = [
        "## Instructions per cached policy decision",
        "",
        f"`{command}`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
        f"{machine()}.",
        "",
        f"- The policy benchmark's requests ({len(SENDERS)} senders, a new message each "
        f"time), {sizes.small:,} and {sizes.big:,} of them, fed to the policy listener's "
        "connection on a stand-in transport, every verdict cached first and the decision "
        "log written, the garbage collector off. Each run is a fresh process under `valgrind "
        "--tool=cachegrind`; the figures are the differences over the difference in "
        "decisions. No event loop turn, no system call and no kernel work is in them.",
        "",
        "| cbv from | instructions per decision | of the first row's | I1 misses | D1 misses |",
        "|---|---:|---:|---:|---:|",
    ]
    for index, (src, value) in enumerate(found.items()):
        label = "this tree" if index == 0 else f"`{src}`"
        lines.append(f"| {label} | {value.instructions / 1000:,.1f} k | "
                     f"{value.instructions / first.instructions:.2f}x | "
                     f"{value.i1_misses:,.0f} | {value.d1_misses:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    args = counting_parser("policy-instructions", __doc__, "decisions", DEFAULT.small,
                           DEFAULT.big).parse_args(argv)
    sizes = Sizes(args.small, args.big)
    return measured_and_written(
        "policy-instructions", "Instructions per cached policy decision", args, argv,
        lambda sources: run(sources, sizes),
        lambda found, command, elapsed: report(found, sizes, command, elapsed))


if __name__ == "__main__":  # the measurements' own processes: python -m bench.policy_instructions
    sys.exit(main(sys.argv[1:]))
