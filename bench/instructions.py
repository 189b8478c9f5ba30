"""Instructions per SMTP callout, counted by cachegrind: a figure the machine's noise leaves alone.

`python -m bench callout` times the CPU of each round, and on a shared machine a round's
ratio to the floor moves by ±20% from one turn to the next: a change worth 2% cannot be
seen in it. The instructions a process executes hardly move: each measurement here runs the
`bench callout` workload (one `verify()` per address on MX domains, and the floor) under
`valgrind --tool=cachegrind` twice, at two sizes, and gives the instructions per callout as
the difference over the difference in callouts (start-up and imports fall out).

What it does not count: the kernel's work (system calls, the loopback's TCP), and what the
memory's layout costs. Its ratio to the floor is not issue 15's target, which is CPU time;
it is the measure for deciding whether a change makes a callout do less.

`--src DIR` (repeatable) measures cbv from other source trees as well (another checkout's
`src`), each a row, so a change is compared with main in one run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from bench.callout import FULL, Scale, dns_main, host_ip, machine, measure_cbv, measure_floor
from bench.helpers import BENCHMARKS_DOC, Helper, write_docs_section
from bench.mx_farm import FarmProcess
from cbv.providers import read_suffix_list

REPO = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 1800.0
Found = TypeVar("Found")
COUNTED = re.compile(r"I\s+refs:\s+([\d,]+)")


@dataclass(frozen=True)
class Sizes:
    small: int  # domains in the smaller run (half of them have MX records)
    big: int
    concurrency: int  # callouts at once: a tenth of the callouts, as in `bench callout`


DEFAULT = Sizes(small=100, big=500, concurrency=100)


def scale_of(domains: int, concurrency: int) -> Scale:
    return Scale(domains=domains, per_domain=FULL.per_domain, hosts=FULL.hosts,
                 concurrency=concurrency, py3ve=0, in_flight=0)


def child(argv: list[str]) -> int:
    """One measurement, run under valgrind: prints how many callouts it made."""
    what, port, nameserver, domains, concurrency = argv
    scale = scale_of(int(domains), int(concurrency))
    read_suffix_list()  # as the daemon does as it starts
    if what == "floor":
        result = measure_floor(scale, int(port), gc_clock=False)
    else:
        result = measure_cbv(scale, nameserver, int(port), "each-mx", gc_clock=False)
        if result["mismatches"]:
            print(f"cbv gave {result['mismatches']} wrong verdicts", file=sys.stderr)
            return 1
    print(f"callouts {result['addresses']}")
    return 0


@dataclass(frozen=True)
class Counted:
    """What cachegrind counted of one process: its output, and its instructions and (when
    simulated) first-level cache misses."""

    stdout: str
    instructions: int
    i1_misses: int = 0
    d1_misses: int = 0


MISSES = {"i1_misses": re.compile(r"I1\s+misses:\s+([\d,]+)"),
          "d1_misses": re.compile(r"D1\s+misses:\s+([\d,]+)")}


def under_cachegrind(module_args: list[str], src: Path, what: str, cache_sim: bool = False
                     ) -> Counted:
    """`python -m MODULE ARGS...` in a fresh process under cachegrind, with cbv from `src`;
    RuntimeError naming `what` with the process's last line if it failed."""
    command = ["valgrind", "--tool=cachegrind", f"--cache-sim={'yes' if cache_sim else 'no'}",
               "--cachegrind-out-file=/dev/null", sys.executable, "-m", *module_args]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(src), str(REPO)]))
    done = subprocess.run(command, env=env, capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT, cwd=REPO, check=False)
    instructions = COUNTED.search(done.stderr)
    if done.returncode or instructions is None:
        own = [line for line in done.stderr.splitlines() if line.strip()
               and not line.startswith("==")]  # valgrind's own lines start with ==pid==
        last = (own or ["no output"])[-1]
        raise RuntimeError(f"{what} from {src} under valgrind failed: {last}")
    misses = {name: int(found.group(1).replace(",", "")) for name, pattern in MISSES.items()
              if (found := pattern.search(done.stderr)) is not None}
    return Counted(done.stdout, int(instructions.group(1).replace(",", "")), **misses)


def counted(what: str, src: Path, port: int, nameserver: str, domains: int, sizes: Sizes
            ) -> tuple[int, int]:
    """(callouts, instructions) of one measurement in a fresh process under cachegrind."""
    done = under_cachegrind(["bench.instructions", "--child", what, str(port), nameserver,
                             str(domains), str(sizes.concurrency)], src, what)
    callouts = re.search(r"^callouts (\d+)$", done.stdout, re.MULTILINE)
    if callouts is None:
        raise RuntimeError(f"{what} from {src} under valgrind failed: no count of callouts")
    return int(callouts.group(1)), done.instructions


def counting_parser(command: str, doc: str | None, unit: str, small: int, big: int
                    ) -> argparse.ArgumentParser:
    """The options of every count at two sizes under valgrind: the sizes (in `unit`),
    other source trees, and whether to leave the docs alone."""
    parser = argparse.ArgumentParser(prog=f"python -m bench {command}", description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", type=Path, action="append", default=[],
                        help="also measure cbv from this source tree (repeatable)")
    parser.add_argument("--small", type=int, default=small,
                        help=f"{unit} in the smaller run (default {small})")
    parser.add_argument("--big", type=int, default=big,
                        help=f"{unit} in the bigger run (default {big})")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"do not update {BENCHMARKS_DOC.name}")
    return parser


def measured_and_written(command: str, title: str, args: argparse.Namespace, argv: list[str],
                         measure: Callable[[list[Path]], Found],
                         section_of: Callable[[Found, str, float], str],
                         most: int | None = None) -> int:
    """Measure this tree and `args.src`'s, print the section, and write it into the docs
    unless told not to or other trees were measured: the exit status (2, and why in one
    line, for what would measure nothing; `--big` is at most `most`)."""
    if (why := refusal(command, args, most)) is not None:
        print(why, file=sys.stderr)
        return 2
    sources = [REPO / "src", *(path.resolve() for path in args.src)]
    started = time.perf_counter()
    try:
        found = measure(sources)
    except RuntimeError as exc:  # a measurement failed: its last line says why
        print(f"bench {command}: {exc}", file=sys.stderr)
        return 1
    section = section_of(found, " ".join([f"python -m bench {command}", *argv]),
                         time.perf_counter() - started)
    print()
    print(section)
    if not args.no_docs and not args.src:
        write_docs_section(command, section)
        print(f"\nwrote the '{title}' section of {BENCHMARKS_DOC}")
    return 0


def refusal(command: str, args: argparse.Namespace, most: int | None = None) -> str | None:
    """Why `bench command` cannot count under valgrind with `args` (from
    `counting_parser`; `--big` at most `most`), in one line; None if it can."""
    if not 0 < args.small < args.big or (most is not None and args.big > most):
        return f"bench {command}: need 0 < --small < --big" + (
            "" if most is None else f" <= {most}")
    if shutil.which("valgrind") is None:
        return f"bench {command}: valgrind is not installed (apt-get install valgrind)"
    for tree in args.src:
        if not (tree / "cbv" / "__init__.py").is_file():
            return f"bench {command}: {tree} is not a source tree (no cbv/__init__.py)"
    return None


def per_callout(small: tuple[int, int], big: tuple[int, int]) -> float:
    """Instructions per callout: what the bigger run did beyond the smaller one."""
    (calls_small, counted_small), (calls_big, counted_big) = small, big
    if calls_big <= calls_small:
        raise ValueError("the bigger run made no more callouts than the smaller one")
    return (counted_big - counted_small) / (calls_big - calls_small)


def run(sources: Sequence[Path], sizes: Sizes, log: Callable[[str], None] = print
        ) -> dict[str, float]:
    """Instructions per callout: "floor", "cbv" (from the first source tree), then cbv
    from each other tree, by its path."""
    farm = FarmProcess([host_ip(h) for h in range(FULL.hosts)], (0,), CHILD_TIMEOUT * 8)
    try:
        dns = Helper("fake-dns", dns_main, scale_of(sizes.big, sizes.concurrency),
                     CHILD_TIMEOUT * 8)
    except BaseException:
        farm.stop()
        raise
    try:
        nameserver = dns.info["nameserver"]
        found: dict[str, float] = {}
        for what, src in [("floor", sources[0]), *(("cbv", s) for s in sources)]:
            log(f"counting {what} from {src} ...")
            small, big = (counted(what, src, farm.port, nameserver, domains, sizes)
                          for domains in (sizes.small, sizes.big))
            name = what if what == "floor" or src == sources[0] else str(src)
            found[name] = per_callout(small, big)
        return found
    finally:
        dns.stop()
        farm.stop()


def report(found: dict[str, float], sizes: Sizes, command: str, elapsed: float) -> str:
    floor = found["floor"]
    lines = [
        "## Instructions per callout",
        "",
        f"`{command}`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
        f"{machine()}.",
        "",
        f"- The `bench callout` workload at two sizes, {sizes.small:,} and {sizes.big:,} "
        f"domains of {FULL.per_domain} addresses, {sizes.concurrency:,} at once: cbv with "
        "one `verify()` per address on the MX domains (half of them), the floor with one "
        "session per address. Each run is a fresh process under `valgrind "
        "--tool=cachegrind`; the figure is the difference in instructions over the "
        "difference in callouts, so start-up and imports fall out. The kernel's work is not "
        "in it.",
        "",
        "| measured | instructions per callout | of the floor's |",
        "|---|---:|---:|",
    ]
    for name, value in found.items():
        label = {"floor": "floor: bare asyncio client", "cbv": "cbv verify() per address, MX "
                 "domains only"}.get(name, f"the same, cbv from `{name}`")
        lines.append(f"| {label} | {value / 1000:,.1f} k | {value / floor:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = counting_parser("instructions", __doc__, "domains", DEFAULT.small, DEFAULT.big)
    parser.add_argument("--concurrency", type=int, default=DEFAULT.concurrency,
                        help=f"callouts at once (default {DEFAULT.concurrency})")
    args = parser.parse_args(argv)
    sizes = Sizes(args.small, args.big, args.concurrency)
    return measured_and_written(
        "instructions", "Instructions per callout", args, argv,
        lambda sources: run(sources, sizes),
        lambda found, command, elapsed: report(found, sizes, command, elapsed), FULL.domains)


if __name__ == "__main__":  # the measurements' own processes: python -m bench.instructions
    sys.exit(main(sys.argv[1:]))
