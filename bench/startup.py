"""`python -m bench startup [--runs N] [--no-docs]`: how long `cbv` takes to answer.

A script that calls `cbv verify` once per address pays the start-up every time. Each
command is run N times as a fresh process (the console script, as a user runs it), the
commands taking turns so that a change in the machine's load hits them all; the median
wall time is reported, beside the bare interpreter and beside importing what the CLI
imported at start before its subcommands were loaded lazily (the daemon, the HTTP app,
the engine), measured in the same run. The configuration is an empty file (the built-in
defaults), except for one command given a file that sets something, which must be
validated (pydantic) even for a syntax-only verdict. The machine's load average is
recorded with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.helpers import write_docs_section

CBV = str(Path(sys.executable).with_name("cbv"))
PYTHON = sys.executable
TARGET_SECONDS = 0.2
COMMANDS: dict[str, list[str]] = {
    "python -c pass (the interpreter alone)": [PYTHON, "-c", "pass"],
    "importing what `cbv` imported before (daemon, HTTP app, engine)": [
        PYTHON, "-c", "import cbv.servers.daemon, cbv.cli.cache_cmd, cbv.cli.demo, "
        "cbv.engine.verifier, rich.progress"],
    "`cbv verify --help`": [CBV, "verify", "--help"],
    "`cbv verify 'not an address'` (a syntax-only verdict)": [CBV, "verify", "not an address"],
    "`cbv verify --json 'not an address'`": [CBV, "verify", "--json", "not an address"],
    "`cbv verify --config SETS 'not an address'` (a file that sets something)": [
        CBV, "verify", "--config", "{sets}", "not an address"],
}
TARGETED = ("`cbv verify --help`", "`cbv verify 'not an address'` (a syntax-only verdict)",
            "`cbv verify --json 'not an address'`")
SETS = '[callout]\nhelo_name = "verifier.cbv.test"\n'


def load_average() -> str:
    with open("/proc/loadavg", encoding="ascii") as loadavg:
        return " ".join(loadavg.read().split()[:3])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time and CPU time (user + system) of one run of `argv`."""
    cpu, started = children_cpu(), time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, timeout=60)
    return time.perf_counter() - started, children_cpu() - cpu


def measure(runs: int) -> dict[str, list[tuple[float, float]]]:
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "cbv.toml"
        config.write_text("")  # the built-in defaults, whatever /etc/cbv holds
        sets = Path(directory) / "sets.toml"
        sets.write_text(SETS)
        env = {**os.environ, "CBV_CONFIG": str(config), "COLUMNS": "80"}
        commands = {name: [arg.replace("{sets}", str(sets)) for arg in argv]
                    for name, argv in COMMANDS.items()}
        for argv in commands.values():  # once each, unmeasured: the page cache warm
            timed(argv, env)
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(runs):
            for name, argv in commands.items():
                times[name].append(timed(argv, env))
    return times


def report(times: dict[str, list[tuple[float, float]]], runs: int, load_before: str,
           load_after: str) -> str:
    medians = {name: statistics.median(wall for wall, _ in values)
               for name, values in times.items()}
    cpu = {name: statistics.median(used for _, used in values) for name, values in times.items()}
    old = "importing what `cbv` imported before (daemon, HTTP app, engine)"
    rows = [f"| {name} | {medians[name] * 1000:.0f} ms | "
            f"{min(wall for wall, _ in values) * 1000:.0f} ms | "
            f"{medians[name] / medians[old]:.2f} | "
            f"{cpu[name] * 1000:.0f} ms | {cpu[name] / cpu[old]:.2f} |"
            for name, values in times.items()]
    verdicts = [f"- Target: {name} within {TARGET_SECONDS:.1f} s: "
                f"{'met' if medians[name] <= TARGET_SECONDS else 'missed'} "
                f"({medians[name]:.2f} s)." for name in TARGETED]
    return "\n".join([
        "## CLI start-up",
        "",
        f"`python -m bench startup`, run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
        f"nproc {os.cpu_count()}, Python {platform.python_version()}; median of {runs} fresh "
        f"processes per command, the commands taking turns; load average {load_before} "
        f"before, {load_after} after (the machine is shared with other work).",
        "",
        "| command | wall, median | wall, fastest | of the old chain's | CPU, median | "
        "of the old chain's |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        *verdicts,
        "- CPU time (user + system) is what load on a shared machine does not inflate; wall "
        "time is what a script waits.",
        "- `cbv.cli.main` imports click and nothing of the daemon, the HTTP app or the engine "
        "(tests/cli/test_startup.py checks which modules load). A syntax-only verdict never "
        "builds the engine; under the built-in defaults (no config file, or one that sets "
        "nothing) it imports no pydantic either, the verdict printed without the Verdict "
        "model, and into a pipe (as here) without rich, as rich would print it there. A "
        "config file that sets something is validated first, so that a broken one "
        "is reported whatever the addresses: importing the config models (pydantic, with "
        "every section's schema) is then most of what it spends beyond `--help`.",
    ])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench startup")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-docs", action="store_true", help="Print, do not write docs.")
    args = parser.parse_args(argv)
    load_before = load_average()
    times = measure(args.runs)
    section = report(times, args.runs, load_before, load_average())
    print(section)
    if not args.no_docs:
        write_docs_section("startup", section)
    return 0
