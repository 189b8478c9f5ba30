"""`python -m bench frontends [--quick]`: cached decisions through each front end of one
daemon, in one run: the Postfix policy listener, the milter listener and `GET /v1/verify`.

cbv (`Daemon.run()`, as `cbv serve` runs it, memory cache, one JSON log line per
decision to a file) runs in a process of its own; the load comes from this one. Each front
end gets 50 persistent connections with one request in flight on each, for the maximum
rate; rounds alternate between the three so a change in the machine's load hits all
alike, and the best round of each counts. Every sender is verified before anything is
timed, so every answer comes from the cache.

- policy: a Postfix RCPT request (29 attributes), a new message each time;
- milter: a Postfix-like milter session (negotiated once, one CONNECT), then per decision
  the MAIL macros and MAIL FROM, answered by cbv, and ABORT (unanswered), as Postfix
  does for a message whose sender is refused or a session that ends;
- HTTP: `GET /v1/verify?address=...` on keep-alive HTTP/1.1 connections, the Verdict as
  JSON in each answer.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import struct
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

from bench.helpers import (
    Helper,
    cpu_seconds,
    raise_fd_limit,
    write_docs_section,
)
from bench.policy import _cpu_model
from bench.policy_load import requests_for
from bench.policy_servers import DOMAIN, cbv_daemon

FRONT_ENDS = ("policy", "milter", "http")
_LENGTH = struct.Struct(">I")


@dataclass(frozen=True)
class Scale:
    seconds: float = 5.0
    rounds: int = 3
    connections: int = 50
    senders: int = 200

    def sender_list(self) -> list[str]:
        return [f"{'pass' if n % 2 else 'fail'}-{n}@{DOMAIN}" for n in range(self.senders)]


QUICK = Scale(seconds=2.0, rounds=1)


@dataclass
class Best:
    rate: float = 0.0
    answers: Counter[str] = field(default_factory=Counter)
    server_cpu_us: float = 0.0  # server CPU per answer in the best round
    client_cpu_share: float = 0.0  # how busy this load generator was in that round


@dataclass
class Results:
    scale: Scale
    best: dict[str, Best] = field(default_factory=lambda: {name: Best() for name in FRONT_ENDS})

    def ratio(self, name: str) -> float:
        return self.best[name].rate / self.best["policy"].rate


def cbv_frontends(conn: Connection, log_path: str) -> None:
    """The daemon with all three listeners, a fake DNS and MX in its own process."""
    cbv_daemon(conn, log_path, {"policy": "127.0.0.1:0", "smtpcbd": "",
                                "milter": "127.0.0.1:0", "http": "127.0.0.1:0"})


class Answering(asyncio.Protocol):
    """A connection that sends one request and waits for its answer, whose end `complete`
    finds in the bytes received (returning the answer's kind and its length)."""

    def __init__(self, complete: Callable[[bytearray], tuple[str, int] | None]) -> None:
        self.complete = complete
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[str] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        done = self.complete(self.buffer)
        if done is not None and self.waiter is not None and not self.waiter.done():
            kind, used = done
            del self.buffer[:used]
            self.waiter.set_result(kind)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("cbv closed the connection"))

    async def ask(self, request: bytes) -> str:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter


def policy_answer(buffer: bytearray) -> tuple[str, int] | None:
    """One policy answer, `action=...` and an empty line: the action's first word."""
    end = buffer.find(b"\n\n")
    if end < 0:
        return None
    return bytes(buffer[len("action="):end]).decode().split(" ")[0], end + 2


def milter_answer(buffer: bytearray) -> tuple[str, int] | None:
    """One milter packet: its response byte ('c' continue, 'y' reply code...)."""
    if len(buffer) < 5:
        return None
    (length,) = _LENGTH.unpack_from(buffer)
    if len(buffer) < 4 + length:
        return None
    return chr(buffer[4]), 4 + length


def http_answer(buffer: bytearray) -> tuple[str, int] | None:
    """One HTTP/1.1 response with a Content-Length: its status code."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    status, *headers = bytes(buffer[:end]).split(b"\r\n")
    length = next(int(value) for name, _, value in (h.partition(b":") for h in headers)
                  if name.strip().lower() == b"content-length")
    if len(buffer) < end + 4 + length:
        return None
    return status[9:12].decode(), end + 4 + length


async def open_clients(address: str, count: int,
                       complete: Callable[[bytearray], tuple[str, int] | None]
                       ) -> list[Answering]:
    host, _, port = address.rpartition(":")
    loop = asyncio.get_running_loop()
    clients = []
    for _ in range(count):
        _, client = await loop.create_connection(lambda: Answering(complete), host, int(port))
        clients.append(client)
    return clients


async def milter_clients(address: str, count: int) -> list[Answering]:
    """Negotiated as Postfix negotiates, with the SMTP client's CONNECT sent."""
    from cbv.protocol.milter import (
        SMFIA,
        SMFIF,
        SMFIP,
        Connect,
        OptionNegotiation,
        encode_command,
    )

    clients = await open_clients(address, count, milter_answer)
    offer = encode_command(OptionNegotiation(6, SMFIF(0x1FF), SMFIP(0x1FFFFF)))
    connect_ = encode_command(Connect("mail.sender.example", SMFIA.INET, 40312, "192.0.2.25"))
    for client in clients:
        assert await client.ask(offer) == "O"
        assert client.transport is not None
        client.transport.write(connect_)  # not answered: cbv only watches CONNECT
    return clients


def milter_requests(senders: Sequence[str]) -> list[bytes]:
    from cbv.protocol.milter import SMFIC, Abort, DefineMacro, Mail, encode_command

    abort = encode_command(Abort())
    return [encode_command(DefineMacro(SMFIC.MAIL, (("i", f"4Q{n:06X}"),)))
            + encode_command(Mail((f"<{sender}>", "SIZE=1000"))) + abort
            for n, sender in enumerate(senders)]


def http_requests(senders: Sequence[str]) -> list[bytes]:
    return [f"GET /v1/verify?address={sender} HTTP/1.1\r\nHost: cbv\r\n\r\n".encode()
            for sender in senders]


async def timed(clients: Sequence[Answering], requests: list[bytes], seconds: float
                ) -> tuple[int, float, Counter[str]]:
    """Closed loop: each connection sends its next request once the last is answered."""
    feed = itertools.cycle(requests)
    deadline = time.perf_counter() + seconds
    answers: Counter[str] = Counter()

    async def drive(client: Answering) -> None:
        while time.perf_counter() < deadline:
            answers[await client.ask(next(feed))] += 1

    started = time.perf_counter()
    await asyncio.gather(*(drive(client) for client in clients))
    return sum(answers.values()), time.perf_counter() - started, answers


async def measure(cbv: Helper, scale: Scale) -> Results:
    results = Results(scale)
    senders = scale.sender_list()
    addresses = cbv.info
    policy = await open_clients(addresses["policy"], scale.connections, policy_answer)
    for request in requests_for(senders, len(senders)):
        await policy[0].ask(request)  # every sender's callout, before anything is timed
    loads = {
        "policy": (policy, requests_for(senders, 20_000)),
        "milter": (await milter_clients(addresses["milter"], scale.connections),
                   milter_requests(senders)),
        "http": (await open_clients(addresses["http"], scale.connections, http_answer),
                 http_requests(senders)),
    }
    for clients, requests in loads.values():
        await timed(clients, requests, min(1.0, scale.seconds))  # warm-up
    for _ in range(scale.rounds):
        for name, (clients, requests) in loads.items():
            server_cpu, client_cpu = cbv.call("cpu"), cpu_seconds()
            answered, seconds, answers = await timed(clients, requests, scale.seconds)
            server_used = cbv.call("cpu") - server_cpu
            best = results.best[name]
            if answered / seconds > best.rate:
                best.rate = answered / seconds
                best.answers = answers
                best.server_cpu_us = server_used / answered * 1e6
                best.client_cpu_share = (cpu_seconds() - client_cpu) / seconds
    for clients, _ in loads.values():
        for client in clients:
            if client.transport is not None:
                client.transport.close()
    return results


def run(scale: Scale) -> Results:
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="cbv-bench-") as tmp:
        cbv = Helper("cbv front ends", cbv_frontends, str(Path(tmp) / "decisions.jsonl"))
        try:
            return asyncio.run(measure(cbv, scale))
        finally:
            cbv.stop()


KINDS = {"c": "continue", "y": "reply code"}


def report(results: Results, quick: bool) -> str:
    scale, best = results.scale, results.best

    def mix(name: str) -> str:
        return ", ".join(f"`{KINDS.get(kind, kind)}` {count:,}"
                         for kind, count in sorted(best[name].answers.items()))

    reference_cpu = best["policy"].server_cpu_us
    rows = [
        f"| {label} | {best[name].rate:,.0f} | **{results.ratio(name):.2f}** | "
        f"{best[name].server_cpu_us:.0f} µs | {best[name].server_cpu_us / reference_cpu:.2f} | "
        f"{best[name].client_cpu_share:.0%} |"
        for name, label in (("policy", "policy listener (reference)"),
                            ("milter", "milter listener, MAIL"),
                            ("http", "HTTP `GET /v1/verify`"))
    ]
    lines = [
        "## Front ends: policy, milter, HTTP",
        "",
        f"`python -m bench frontends`{' --quick' if quick else ''}, run "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}, "
        f"{_cpu_model()}. One cbv daemon (memory cache, one JSON log line per decision to a "
        f"file) with its three listeners; {scale.connections} persistent connections per "
        f"front end, one request in flight on each, {scale.senders} senders all cached; "
        f"best of {scale.rounds} alternating {scale.seconds:.0f} s rounds. The load "
        "generator runs in a process of its own.",
        "",
        "| front end | decisions per second | of the policy listener's | server CPU per "
        "answer | of the policy listener's | load generator busy |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"- Answers in the best rounds: policy {mix('policy')}; milter {mix('milter')}; "
        f"HTTP {mix('http')}.",
        "- A milter decision is three packets (the MAIL macros, MAIL, ABORT) through the "
        "codec and the session's checks, where a policy decision is one request; an HTTP "
        "answer is a whole request through uvicorn's h11 and FastAPI's routing, dependency "
        "(the token check) and parameter validation, and carries the full Verdict as JSON.",
        "- On this 2-core machine the rates move by a fifth from run to run with whatever "
        "else runs; the server CPU per answer is the steadier comparison.",
    ]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench frontends", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, one round")
    parser.add_argument("--no-docs", action="store_true", help="do not update the docs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    section = report(run(QUICK if args.quick else Scale()), args.quick)
    print(section)
    print(f"\n({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if not args.no_docs:
        write_docs_section("frontends", section)
    return 0


