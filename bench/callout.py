"""`python -m bench callout [--quick]`: the callout engine against a floor and a peer library.

In one run, against one fast fake MX farm (its own process, port 25 on 127.0.1.x) and one
FakeDNS (its own process too), each measurement in a fresh process of its own:

1. floor: a bare asyncio client, connect/EHLO/MAIL/RCPT/QUIT per address, no DNS, no
   classification: the least any callout can cost on this machine;
2. cbv: `Verifier.verify_many` over every address (sessions shared per domain), one
   `Verifier.verify` per address (no sharing), and that again on the MX domains only (one
   session per address, like the floor: the like-for-like cost of a callout), through the
   fake DNS;
3. py3-validate-email 1.0.5 with 16 threads on a subset, on the same farm and DNS;
4. cbv holding 10,000 callouts in flight against the farm slowed to ~2 s per reply,
   sampling VmRSS and the event loop's lateness, counting verdicts that ended in a DNS
   timeout.

The per-address verify() row on MX domains is measured on asyncio and again on uvloop.

Only loopback is ever dialled: `.test` names, the fake DNS, and a guard in every measuring
process that refuses any name lookup the system resolver could see. py3-validate-email is
installed by bench/install-py3ve.sh (its setup.py wants the Internet).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib.util
import os
import platform
import random
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.helpers import (
    BENCHMARKS_DOC,
    Helper,
    cpu_seconds,
    loopback_only,
    machine_busy_seconds,
    raise_fd_limit,
    run_isolated,
    serve_requests,
    status_mb,
    write_docs_section,
)
from bench.mx_farm import FarmProcess, mailbox_exists
from cbv.config import Config, config_from_dict
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.gc_clock import collect_on_a_clock
from cbv.gc_tuning import tune_for_many_connections
from cbv.model import Verdict
from cbv.providers import read_suffix_list
from cbv.servers.event_loop import READY_PER_TURN, loop_factory

HELO = "verifier.bench.test"
SEED = 5321
SLOW_DELAY = 2.0  # seconds before each reply of the slow farm
PY3VE_THREADS = 16
RUN_LIMIT = 300.0  # seconds any one measurement may take before it gives up
PHASE_TIMEOUT = RUN_LIMIT + 120.0

# Targets from the issues (15 for the CPU per callout and the slow farm).
MIN_FLOOR_RATIO = 0.60
MIN_PY3VE_RATIO = 5.0
MAX_MANY_CPU_RATIO = 0.8  # verify_many's CPU per address over the floor's
MAX_CALLOUT_CPU_RATIO = 1.5  # one verify() per address on MX domains: CPU per SMTP callout
MAX_RSS_MB = 150.0
MAX_KB_PER_CALLOUT = 10.0  # RSS above the baseline per callout in flight
MAX_STALL = 0.1  # seconds the event loop may be late while callouts are in flight


@dataclass(frozen=True)
class Scale:
    domains: int
    per_domain: int
    hosts: int  # farm hosts, 127.0.1.1 ...
    concurrency: int  # cbv's limits.max_in_flight, and the floor's
    py3ve: int  # addresses checked by py3-validate-email; 0 skips it
    in_flight: int  # callouts held against the slow farm; 0 skips it
    single: bool = True  # also measure one verify() per address

    @property
    def addresses(self) -> int:
        return self.domains * self.per_domain


FULL = Scale(domains=2000, per_domain=10, hosts=20, concurrency=1000, py3ve=2000,
             in_flight=10_000)
QUICK = Scale(domains=200, per_domain=10, hosts=20, concurrency=1000, py3ve=200, in_flight=1000)


# The workload: a pure function of the scale, rebuilt identically in every process.

def domain_name(index: int) -> str:
    return f"d{index:05d}.bench.test"


def host_name(index: int) -> str:
    return f"mx{index:02d}.farm.test"


def host_ip(index: int) -> str:
    return f"127.0.1.{index + 1}"


def domain_kind(index: int) -> str:
    """Half the domains have MX records; of the rest half are NXDOMAIN, half have no MX."""
    if index % 2 == 0:
        return "mx"
    return "nxdomain" if index % 4 == 1 else "no-mx"


@dataclass(frozen=True)
class Item:
    address: str
    domain: int
    local_exists: bool  # the farm accepts the RCPT, whatever the domain

    @property
    def expected(self) -> str:
        """The verdict reason cbv must give."""
        if domain_kind(self.domain) != "mx":
            return "no_mail_domain"
        return "accepted" if self.local_exists else "mailbox_unknown"

    def farm_ip(self, hosts: int) -> str:
        return host_ip(self.domain % hosts)


def workload(scale: Scale) -> list[Item]:
    """Every address once, shuffled so that any prefix is a fair sample."""
    items = []
    for domain in range(scale.domains):
        for k in range(scale.per_domain):
            local = f"u{domain:05d}{k:03d}"
            items.append(Item(f"{local}@{domain_name(domain)}", domain,
                              mailbox_exists(local.encode())))
    random.Random(SEED).shuffle(items)
    return items


# The fake DNS process.

def dns_main(conn: Connection, scale: Scale, lifetime: float) -> None:
    from cbv.testing import FakeDNS

    fake = FakeDNS()
    for h in range(scale.hosts):
        fake.add_a(host_name(h), host_ip(h))
    for i in range(scale.domains):
        kind = domain_kind(i)
        if kind == "mx":
            primary, backup = i % scale.hosts, (i + 1) % scale.hosts
            fake.add_mx(domain_name(i), [(10, host_name(primary)), (20, host_name(backup))])
        elif kind == "no-mx":
            fake.add_txt(domain_name(i), "v=spf1 -all")
    fake.start()
    conn.send(("ok", {"nameserver": fake.nameserver, "host": fake.host, "port": fake.port}))

    def stats() -> dict[str, Any]:
        queries = fake.queries
        return {"queries": len(queries), "mx_queries": sum(t == "MX" for _, t in queries),
                "cpu": cpu_seconds()}

    try:
        serve_requests(conn, {"stats": stats}, lifetime)
    finally:
        fake.stop()


# Measurements, each run in a fresh process by run_isolated.

def _prepare(scale: Scale) -> list[Item]:
    raise_fd_limit()
    loopback_only({host_name(h): host_ip(h) for h in range(scale.hosts)})
    return workload(scale)


def _measured(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Wall and CPU time of `run`, the share of it spent collecting garbage, and peak RSS."""
    in_gc = [0.0, 0.0, 0.0]  # started at, total, longest

    def on_gc(phase: str, info: dict[str, int]) -> None:
        now = time.perf_counter()
        if phase == "start":
            in_gc[0] = now
        else:
            in_gc[1] += now - in_gc[0]
            in_gc[2] = max(in_gc[2], now - in_gc[0])

    gc.callbacks.append(on_gc)
    cpu, busy, started = cpu_seconds(), machine_busy_seconds(), time.perf_counter()
    try:
        result = run()
    finally:
        gc.callbacks.remove(on_gc)
    result["wall"] = time.perf_counter() - started
    result["cpu"] = cpu_seconds() - cpu
    result["machine_busy"] = machine_busy_seconds() - busy
    result["gc"] = in_gc[1]
    result["longest_gc"] = in_gc[2]
    result["peak_rss_mb"] = status_mb("VmHWM")
    return result


async def _floor_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if len(line) < 4:
            raise ConnectionError("connection closed mid-reply")
        if line[3:4] != b"-":
            return int(line[:3])


async def _floor_session(ip: str, port: int, address: str) -> int:
    """connect, EHLO, MAIL, RCPT, QUIT: the least any callout does. Returns the RCPT code."""
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        await _floor_reply(reader)
        codes = []
        for line in (b"EHLO floor.bench.test", b"MAIL FROM:<>",
                     b"RCPT TO:<%s>" % address.encode(), b"QUIT"):
            writer.write(line + b"\r\n")
            codes.append(await _floor_reply(reader))
        return codes[2]
    finally:
        writer.close()


async def _floor(pairs: Sequence[tuple[str, str]], port: int, concurrency: int,
                 gc_clock: bool) -> Counter[str]:
    codes: Counter[str] = Counter()
    todo = iter(pairs)

    async def worker() -> None:
        for ip, address in todo:
            try:
                codes[str(await _floor_session(ip, port, address))] += 1
            except (OSError, ValueError) as exc:
                codes[type(exc).__name__] += 1

    async with asyncio.timeout(RUN_LIMIT), _collecting_as_the_daemon(gc_clock):
        await asyncio.gather(*(worker() for _ in range(min(concurrency, len(pairs)))))
    return codes


@contextlib.asynccontextmanager
async def _collecting_as_the_daemon(gc_clock: bool = True) -> AsyncIterator[None]:
    """The collector's clock the daemon runs (`cbv.gc_clock`), for the floor and cbv
    alike. `bench instructions` goes without it: under valgrind a program runs some 50
    times slower, so a clock in seconds would collect 50 times as often per callout."""
    if not gc_clock:
        yield
        return
    clock = asyncio.create_task(collect_on_a_clock())
    try:
        yield
    finally:
        clock.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await clock


def measure_floor(scale: Scale, port: int, gc_clock: bool = True) -> dict[str, Any]:
    items = _prepare(scale)
    pairs = [(item.farm_ip(scale.hosts), item.address) for item in items]
    tune_for_many_connections()  # as cbv's are: the collector's share is compared like for like

    def run() -> dict[str, Any]:
        return {"outcomes": dict(asyncio.run(_floor(pairs, port, scale.concurrency, gc_clock)))}

    result = _measured(run)
    result["addresses"] = len(items)
    result["expected"] = dict(Counter("250" if i.local_exists else "550" for i in items))
    return result


def cbv_config(nameserver: str, port: int, concurrency: int) -> Config:
    """cbv set up for this farm: loopback allowed, an in-memory cache, and the good-citizenship
    limits raised out of the way. Those exist to spare real MX hosts (5 sessions per host by
    default); left on, 20 farm hosts would measure the limits, not the engine."""
    data: dict[str, Any] = {
        "dns": {"nameservers": [nameserver]},
        "callout": {"port": port, "helo_name": HELO},
        "security": {"allowed_target_networks": ["127.0.0.0/8"]},
        "cache": {"url": "memory://"},
        "limits": {"mx_concurrency": concurrency, "max_in_flight": concurrency,
                   **{f"{unit}_{key}": value
                      for unit in ("domain", "ip", "network", "provider")
                      for key, value in (("per_minute", 1_000_000), ("burst", 100_000))}},
    }
    return config_from_dict(data)


async def _verify_each(verifier: Verifier, addresses: Sequence[str], concurrency: int
                       ) -> list[Verdict]:
    """One verify() per address from `concurrency` workers, as a busy daemon would call it."""
    verdicts: list[Verdict | None] = [None] * len(addresses)
    todo = iter(enumerate(addresses))

    async def worker() -> None:
        for index, address in todo:
            verdicts[index] = await verifier.verify(address)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(addresses)))))
    return [v for v in verdicts if v is not None]


def _tally(items: Sequence[Item], verdicts: Sequence[Verdict]) -> dict[str, Any]:
    got = {v.address: v for v in verdicts}
    wrong = [got.get(item.address) for item in items
             if (v := got.get(item.address)) is None or v.reason.value != item.expected]
    return {
        "outcomes": dict(Counter(v.reason.value for v in got.values())),
        "expected": dict(Counter(item.expected for item in items)),
        "mismatches": len(wrong),
        "mismatch_details": dict(Counter(re.sub(r"\d+", "N", v.detail or v.reason.value)
                                         if v else "no verdict" for v in wrong)),
    }


def measure_cbv(scale: Scale, nameserver: str, port: int, mode: str,
                loop: str = "asyncio", gc_clock: bool = True) -> dict[str, Any]:
    """mode: "many" (verify_many), "each" (verify() per address), "each-mx" (verify() per
    address on the MX domains only: every address one SMTP session, like the floor's);
    loop: "asyncio" or "uvloop"."""
    items = _prepare(scale)
    if mode == "each-mx":
        items = [item for item in items if domain_kind(item.domain) == "mx"]
    addresses = [item.address for item in items]
    config = cbv_config(nameserver, port, scale.concurrency)
    read_suffix_list()  # as the daemon does as it starts
    tune_for_many_connections()  # as the `cbv` command does

    async def verify() -> list[Verdict]:
        async with (asyncio.timeout(RUN_LIMIT), _collecting_as_the_daemon(gc_clock),
                    Verifier(assemble(config)) as verifier):
            if mode != "many":
                return await _verify_each(verifier, addresses, scale.concurrency)
            return await verifier.verify_many(addresses)

    verdicts: list[Verdict] = []

    def run() -> dict[str, Any]:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            verdicts.extend(runner.run(verify()))
        return {}

    result = _measured(run)
    result["addresses"] = len(items)
    result.update(_tally(items, verdicts))
    return result


async def _arrive(verifier: Verifier, addresses: Sequence[str]) -> list[Verdict]:
    """One verify() per address, READY_PER_TURN more each turn, as requests reach the
    daemon on asyncio: its event loop takes no more ready sockets than that in a turn.
    All of them in one turn would make that turn run the first steps of every call
    (parse, cache, pacer; 0.15-0.33 s here): the bench's own launch."""
    calls: list[asyncio.Task[Verdict]] = []
    for start in range(0, len(addresses), READY_PER_TURN):
        if start:
            await asyncio.sleep(0)
        calls.extend(asyncio.create_task(verifier.verify(address))
                     for address in addresses[start:start + READY_PER_TURN])
    return await asyncio.gather(*calls)


def measure_slow(scale: Scale, nameserver: str, port: int, loop: str = "asyncio"
                 ) -> dict[str, Any]:
    """`in_flight` verify() calls in flight together against the slow farm, sampling
    VmRSS; loop: "asyncio" or "uvloop"."""
    items = [i for i in _prepare(scale) if domain_kind(i.domain) == "mx"][: scale.in_flight]
    config = cbv_config(nameserver, port, scale.in_flight)
    read_suffix_list()  # as the daemon does as it starts
    tune_for_many_connections()  # as the `cbv` command does
    samples: list[float] = []
    stalls: list[tuple[float, float]] = [(0.0, 0.0)]  # (how late, the loop's CPU meanwhile)

    async def verify() -> list[Verdict]:
        async def sample() -> None:
            """VmRSS every 50 ms, and how late each wake-up is: the event loop's stalls;
            with the CPU its thread used meanwhile, which tells its own work from the
            machine's other load."""
            loop = asyncio.get_running_loop()
            while True:
                samples.append(status_mb("VmRSS"))
                due = loop.time() + 0.05
                cpu = time.thread_time()
                await asyncio.sleep(0.05)
                stalls.append((loop.time() - due, time.thread_time() - cpu))

        sampler = asyncio.create_task(sample())
        try:
            async with (asyncio.timeout(RUN_LIMIT), _collecting_as_the_daemon(),
                        Verifier(assemble(config)) as verifier):
                return await _arrive(verifier, [i.address for i in items])
        finally:
            sampler.cancel()

    baseline = status_mb("VmRSS")
    verdicts: list[Verdict] = []

    def run() -> dict[str, Any]:
        with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
            verdicts.extend(runner.run(verify()))
        return {}

    result = _measured(run)
    result.update(_tally(items, verdicts))
    result.update(addresses=len(items), rss_baseline_mb=baseline, rss_sampled_peak_mb=max(samples),
                  max_stall=max(stalls)[0], max_stall_cpu=max(stalls)[1],
                  dns_timeouts=sum(1 for v in verdicts if "DNS timeout" in (v.detail or "")))
    return result


def measure_py3ve(scale: Scale, dns_host: str, dns_port: int) -> dict[str, Any]:
    """py3-validate-email as its users run it, its DNS pointed at the fake DNS.

    It calls dnspython's default resolver, so that is replaced before the first query; it
    connects to MX host names through getaddrinfo, which the loopback guard answers from the
    farm's table as an /etc/hosts would (so it does no A lookups: a small head start).
    """
    items = _prepare(scale)[: scale.py3ve]
    os.environ["PY3VE_IGNORE_UPDATER"] = "1"  # read when validate_email is imported
    import dns.nameserver
    import dns.resolver

    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver(dns_host, dns_port)]
    dns.resolver.default_resolver = resolver
    from validate_email import validate_email

    def check(address: str) -> bool | None:
        result: bool | None = validate_email(
            address, smtp_helo_host=HELO, smtp_timeout=10, dns_timeout=5
        )
        return result

    answers: list[bool | None] = []

    def run() -> dict[str, Any]:
        with ThreadPoolExecutor(PY3VE_THREADS) as pool:
            answers.extend(pool.map(check, [item.address for item in items], timeout=RUN_LIMIT))
        return {}

    result = _measured(run)
    assert dns.resolver.get_default_resolver() is resolver
    result["addresses"] = len(items)
    result["outcomes"] = dict(Counter(str(a) for a in answers))
    expected = [item.expected == "accepted" for item in items]
    result["expected"] = dict(Counter(str(e) for e in expected))
    result["mismatches"] = sum(a is not e for a, e in zip(answers, expected, strict=True))
    result["domains"] = len({item.domain for item in items})
    return result


# The run, the report and the docs section.

Measurement = tuple[str, Callable[..., dict[str, Any]], tuple[Any, ...]]  # name, function, args


def run(scale: Scale, ports: Sequence[int] = (25, 0), py3ve: bool = True, rounds: int = 1,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement of one run; helper processes stop before this returns.

    Throughput measurements are taken `rounds` times and the fastest round kept: on a
    shared machine, what else runs can only slow a round down.
    """
    lifetime = (5 * rounds + 1) * PHASE_TIMEOUT + 600
    farm = FarmProcess([host_ip(h) for h in range(scale.hosts)], ports, lifetime)
    try:
        dns = Helper("fake-dns", dns_main, scale, lifetime)
    except BaseException:
        farm.stop()
        raise
    results: dict[str, Any] = {"port": farm.port, "skipped": {}}
    if farm.note:
        log(f"NOTE: fake MX farm fell back to port {farm.port} ({farm.note}); "
            "py3-validate-email needs port 25 and is skipped")
    try:
        nameserver = dns.info["nameserver"]

        def measure(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
            farm.reset_peak()
            farm0, dns0 = farm.stats(), dns.call("stats")
            result: dict[str, Any] = run_isolated(function, scale, *args, timeout=PHASE_TIMEOUT)
            farm1, dns1 = farm.stats(), dns.call("stats")
            result.update(
                farm_cpu=farm1["cpu"] - farm0["cpu"],
                sessions=farm1["connections"] - farm0["connections"],
                rcpts=farm1["rcpts"] - farm0["rcpts"],
                peak_in_flight=farm1["peak_open"],
                dns_queries=dns1["queries"] - dns0["queries"],
                dns_mx_queries=dns1["mx_queries"] - dns0["mx_queries"],
                dns_cpu=dns1["cpu"] - dns0["cpu"],
            )
            return result

        def alternating(*specs: Measurement, best_of: int = rounds) -> None:
            """Rounds taken in turn (floor, cbv, ..., floor, cbv, ...), the fastest of each
            kept: a change in the machine's state (other load, the sockets the round before
            left in TIME_WAIT) falls on every measurement alike, not on whichever ran first."""
            tries: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in specs}
            for number in range(best_of):
                for name, function, args in specs:
                    log(f"measuring {name}, round {number + 1} of {best_of} ...")
                    tries[name].append(measure(function, *args))
            for name, found in tries.items():
                results[name] = min(found, key=lambda r: float(r["wall"]))
                results[name]["rounds"] = [round(float(r["wall"]), 2) for r in found]
                results[name]["cpu_rounds"] = [cpu_ms(r) for r in found]

        throughput: list[Measurement] = [("floor", measure_floor, (farm.port,)),
                      ("cbv", measure_cbv, (nameserver, farm.port, "many"))]
        if scale.single:
            throughput += [("cbv_single", measure_cbv, (nameserver, farm.port, "each")),
                           ("cbv_single_mx", measure_cbv, (nameserver, farm.port, "each-mx"))]
            if importlib.util.find_spec("uvloop") is not None:
                throughput.append(("cbv_single_mx_uvloop", measure_cbv,
                                   (nameserver, farm.port, "each-mx", "uvloop")))
            else:
                results["skipped"]["cbv_single_mx_uvloop"] = "uvloop is not installed"
        alternating(*throughput)
        reason = _py3ve_unavailable(farm.port) if py3ve and scale.py3ve else "not asked for"
        if reason is None:
            alternating(("py3ve", measure_py3ve, (dns.info["host"], dns.info["port"])))
            seen = results["py3ve"]["dns_mx_queries"]
            if seen < results["py3ve"]["domains"]:
                raise RuntimeError(f"py3-validate-email made only {seen} MX queries to the "
                                   "fake DNS: its queries went elsewhere")
        else:
            results["skipped"]["py3ve"] = reason
        if scale.in_flight:
            farm.set_delay(SLOW_DELAY)
            alternating(("slow", measure_slow, (nameserver, farm.port)), best_of=1)
            if importlib.util.find_spec("uvloop") is not None:
                alternating(("slow_uvloop", measure_slow, (nameserver, farm.port, "uvloop")),
                            best_of=1)
            farm.set_delay(0.0)
    finally:
        dns.stop()
        farm.stop()
    return results


def _py3ve_unavailable(port: int) -> str | None:
    if port != 25:
        return f"the farm is on port {port}, and py3-validate-email always dials port 25"
    if importlib.util.find_spec("validate_email") is None:
        return "py3-validate-email is not installed (run bench/install-py3ve.sh)"
    return None


ROWS = [
    ("floor", "floor: bare asyncio client"),
    ("cbv", "cbv verify_many"),
    ("cbv_single", "cbv verify() per address"),
    ("cbv_single_mx", "cbv verify() per address, MX domains only"),
    ("cbv_single_mx_uvloop", "the same on uvloop"),
    ("py3ve", f"py3-validate-email, {PY3VE_THREADS} threads"),
    ("slow", f"cbv, slow farm ({SLOW_DELAY:g} s/reply)"),
    ("slow_uvloop", "the same on uvloop"),
]


def rate(result: dict[str, Any]) -> float:
    return float(result["addresses"] / result["wall"])


def cpu_ms(result: dict[str, Any], key: str = "cpu") -> float:
    return float(result[key] / result["addresses"] * 1000)


def cpu_ratio(results: dict[str, Any], key: str) -> tuple[float, list[float]]:
    """`key`'s CPU per address over the floor's: the median of the rounds' ratios, each
    round over the floor's of the same turn, and those ratios. Rounds taken minutes apart on
    a shared machine differ by more than the code does; rounds of one turn share its state,
    where the fastest round of each row may come from different turns."""
    mine, floors = results[key].get("cpu_rounds", []), results["floor"].get("cpu_rounds", [])
    if not mine or len(mine) != len(floors):
        return cpu_ms(results[key]) / cpu_ms(results["floor"]), []
    ratios = [m / f for m, f in zip(mine, floors, strict=True)]
    return statistics.median(ratios), ratios


def _ratio_text(ratio: float, ratios: list[float]) -> str:
    if len(ratios) < 2:
        return f"{ratio:.2f}x"
    return f"{ratio:.2f}x (rounds {' / '.join(f'{r:.2f}' for r in ratios)})"


def others_load(r: dict[str, Any]) -> float:
    """Cores busy with anything but this measurement, the farm and the fake DNS."""
    others = float(r["machine_busy"] - r["cpu"] - r["farm_cpu"] - r["dns_cpu"])
    return max(0.0, others) / float(r["wall"])


def table(results: dict[str, Any]) -> str:
    lines = [
        "| measurement | addresses | SMTP sessions | RCPTs | DNS queries | wall s | addresses/s "
        "| CPU ms/address | of which GC | CPU / wall | farm / DNS busy | other load "
        "| peak in flight | peak RSS MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for key, label in ROWS:
        r = results.get(key)
        if r is None:
            continue
        lines.append(
            f"| {label} | {r['addresses']:,} | {r['sessions']:,} | {r['rcpts']:,} "
            f"| {r['dns_queries']:,} | {r['wall']:.2f} | {rate(r):,.0f} | {cpu_ms(r):.3f} "
            f"| {r['gc'] / r['cpu']:.0%} | {r['cpu'] / r['wall']:.0%} "
            f"| {r['farm_cpu'] / r['wall']:.0%} / {r['dns_cpu'] / r['wall']:.0%} "
            f"| {others_load(r):.2f} | {r['peak_in_flight']:,} | {r['peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met); met is None when it could not be measured."""
    rows: list[tuple[str, str, bool | None]] = []
    floor, cbv = results["floor"], results["cbv"]
    ratio = rate(cbv) / rate(floor)
    rows.append((f"cbv throughput ≥ {MIN_FLOOR_RATIO:.0%} of the floor's", f"{ratio:.2f}x",
                 ratio >= MIN_FLOOR_RATIO))
    if "py3ve" in results:
        ratio = rate(cbv) / rate(results["py3ve"])
        rows.append((f"cbv throughput ≥ {MIN_PY3VE_RATIO:g}x py3-validate-email's",
                     f"{ratio:.1f}x", ratio >= MIN_PY3VE_RATIO))
    else:
        rows.append((f"cbv throughput ≥ {MIN_PY3VE_RATIO:g}x py3-validate-email's",
                     "skipped: " + results["skipped"].get("py3ve", "?"), None))
    ratio, ratios = cpu_ratio(results, "cbv")
    rows.append((f"verify_many CPU per address ≤ {MAX_MANY_CPU_RATIO:g}x the floor's",
                 _ratio_text(ratio, ratios), ratio <= MAX_MANY_CPU_RATIO))
    for key, loop in (("cbv_single_mx", "asyncio"), ("cbv_single_mx_uvloop", "uvloop")):
        if key in results:
            ratio, ratios = cpu_ratio(results, key)
            rows.append((f"verify() per address on MX domains ({loop}): CPU per SMTP callout "
                         f"≤ {MAX_CALLOUT_CPU_RATIO:g}x the floor's (asyncio)",
                         _ratio_text(ratio, ratios), ratio <= MAX_CALLOUT_CPU_RATIO))
    if "slow" in results:
        rows.extend(_slow_targets(results["slow"]))
    return rows


def _slow_targets(slow: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The slow farm's: RSS, RSS per callout in flight, the event loop's stalls, DNS
    timeouts."""
    rss = max(slow["rss_sampled_peak_mb"], slow["peak_rss_mb"])
    held = slow["peak_in_flight"]
    all_held = held >= slow["addresses"]
    per_callout_kb = (rss - slow["rss_baseline_mb"]) * 1024 / max(held, 1)
    return [
        (f"{slow['addresses']:,} callouts in flight under {MAX_RSS_MB:g} MB RSS",
         f"{rss:.0f} MB with {held:,} in flight", rss < MAX_RSS_MB and all_held),
        (f"≤ {MAX_KB_PER_CALLOUT:g} KB RSS per callout in flight",
         f"{per_callout_kb:.1f} KB ({rss - slow['rss_baseline_mb']:.0f} MB over the "
         f"{slow['rss_baseline_mb']:.0f} MB before)", per_callout_kb <= MAX_KB_PER_CALLOUT),
        (f"no event-loop stall over {MAX_STALL * 1000:g} ms",
         f"longest {slow['max_stall']:.2f} s ({slow['max_stall_cpu']:.2f} s of CPU in its "
         f"{0.05 + slow['max_stall']:.2f} s)",
         slow["max_stall"] <= MAX_STALL),
        ("no verdict ends in a DNS timeout", f"{slow['dns_timeouts']:,}",
         slow["dns_timeouts"] == 0),
    ]


def informational(results: dict[str, Any]) -> list[str]:
    floor = results["floor"]
    notes = []
    for key, what in (("cbv_single", "cbv verify() per address"),
                      ("cbv_single_mx", "per SMTP callout (cbv verify() on MX domains only, "
                       "one session each, like the floor)"),
                      ("cbv_single_mx_uvloop", "the same on uvloop")):
        if key in results:
            r = results[key]
            notes.append(f"{what}: {rate(r) / rate(floor):.2f}x the floor's throughput, "
                         f"{cpu_ratio(results, key)[0]:.2f}x its CPU per address")
    for key, _ in ROWS:
        r = results.get(key)
        if r is not None and r.get("mismatches"):
            details = "; ".join(f"{n}x {d}" for d, n in
                                Counter(r.get("mismatch_details", {})).most_common(3))
            notes.append(f"WARNING: {key}: {r['mismatches']} verdicts differ from the expected "
                         f"({details})")
        if r is not None and "outcomes" in r:
            notes.append(f"{key} outcomes: {r['outcomes']} (expected {r.get('expected')})")
    walls = ", ".join(f"{key} {results[key]['rounds']}" for key, _ in ROWS
                      if key in results and len(results[key]["rounds"]) > 1)
    if walls:
        notes.append(f"wall seconds of every round: {walls}")
    for key, what in (("slow", "slow farm"), ("slow_uvloop", "slow farm on uvloop")):
        if key not in results:
            continue
        slow = results[key]
        notes.append(f"{what}: VmRSS {slow['rss_baseline_mb']:.0f} MB before, sampled peak "
                     f"{slow['rss_sampled_peak_mb']:.0f} MB, VmHWM {slow['peak_rss_mb']:.0f} MB; "
                     f"longest event-loop stall {slow['max_stall']:.2f} s, longest garbage "
                     f"collection {slow['longest_gc']:.2f} s; {slow['dns_timeouts']:,} verdicts "
                     "ended in a DNS timeout")
    return notes


def machine() -> str:
    model = ""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
        model = found.group(1).strip() if found else ""
    except OSError:
        pass
    return (f"nproc {len(os.sched_getaffinity(0))}{', ' + model if model else ''}; "
            f"Python {platform.python_version()} ({platform.python_implementation()}), "
            f"{platform.system()} {platform.release()}")


def report(results: dict[str, Any], scale: Scale, command: str, elapsed: float) -> str:
    met = {True: "yes", False: "**no**", None: "n/a"}
    lines = [
        "## Callout engine",
        "",
        f"`{command}`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
        f"{machine()}.",
        "",
        f"- Workload: {scale.addresses:,} addresses over {scale.domains:,} `.test` domains: half "
        f"with two MX records at a {scale.hosts}-host fake farm (127.0.1.x, port "
        f"{results['port']}), a quarter NXDOMAIN, a quarter without MX; half the addresses on "
        "MX domains exist. py3-validate-email gets the first "
        f"{scale.py3ve:,} of the same shuffled list.",
        f"- Concurrency {scale.concurrency:,} (cbv's `limits.max_in_flight`) for the "
        f"floor and cbv; {PY3VE_THREADS} threads for py3-validate-email; the slow farm run sets "
        f"`limits.max_in_flight` to {scale.in_flight:,} and calls `verify()` that many times, "
        f"{READY_PER_TURN} more each event-loop turn (as many ready sockets as the daemon's "
        "loop takes in a turn), so that all are in flight together.",
        "- cbv runs with `cache.url = \"memory://\"` and its `limits` raised so that they never "
        "bind (they spare real MX hosts: 5 sessions per host by default); their code still runs. "
        "cbv and the floor both tune the garbage collector as the `cbv` command does, and "
        "collect young objects on the daemon's clock (`cbv.gc_clock`), so the collector's "
        "share is compared like for like.",
        "- The farm and the fake DNS run in processes of their own; each measurement runs in a "
        "fresh process and reports its CPU time (user + system), the part of it spent in "
        "Python's garbage collector (\"of which GC\") and its peak RSS (VmHWM). \"farm / DNS "
        "busy\" is their CPU time over the wall time: well under 100 %, they were not the "
        "bottleneck. \"CPU / wall\" near 100 % means the measured client was CPU-bound; "
        "\"other load\" is how many cores anything else on the machine kept busy meanwhile "
        f"(out of {len(os.sched_getaffinity(0))}): above ~0.2, wall-clock rates are "
        "depressed and the CPU figures are the ones to compare.",
        f"- Each throughput row is the fastest of {len(results['floor']['rounds'])} round(s), "
        "each in a fresh process (walls of every round are listed below), the rows' rounds "
        "taken in turn (floor, cbv, ..., floor, cbv, ...) so that a change in the machine's "
        "state falls on all of them alike; the slow farm rows are one round each. A CPU "
        "ratio against the floor is the median of the rounds' ratios, each round over the "
        "floor's of the same turn (listed with the target).",
        "- Throughput counts addresses with a verdict per second of wall time. cbv needs no "
        "SMTP for domains without mail, and `verify_many` asks up to 9 addresses per session "
        "(plus a catch-all probe); the floor makes one session per address. The row \"MX "
        "domains only\" is the like-for-like cost of one SMTP callout.",
        "",
        table(results),
        "",
        "| target | measured | met |",
        "|---|---|---|",
        *(f"| {t} | {m} | {met[ok]} |" for t, m, ok in targets(results)),
        "",
        *(f"- {note}" for note in informational(results)),
    ]
    for key, why in results["skipped"].items():
        lines.append(f"- {key} skipped: {why}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench callout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK.addresses:,} addresses, for smoke checks (no docs)")
    parser.add_argument("--port", type=int, default=25,
                        help="farm port (default 25, falling back to a free high port; 0: any)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds per throughput measurement, fastest kept (default: 3, "
                        "1 with --quick)")
    parser.add_argument("--no-docs", action="store_true",
                        help=f"do not update {BENCHMARKS_DOC.name}")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    ports = (args.port, 0) if args.port else (0,)
    started = time.perf_counter()
    rounds = args.rounds or (1 if args.quick else 3)
    results = run(scale, ports, rounds=rounds)
    elapsed = time.perf_counter() - started
    command = " ".join(["python -m bench callout", *argv])
    section = report(results, scale, command, elapsed)
    print()
    print(section)
    if not (args.quick or args.no_docs):
        write_docs_section("callout", section)
        print(f"\nwrote the 'Callout engine' section of {BENCHMARKS_DOC}")
    print(f"\ntotal {elapsed:.1f} s", file=sys.stderr)
    return 0
