"""A fast fake MX farm for benchmarks, run in a process of its own (`FarmProcess`).

The test kit's ScriptedMX is built to misbehave on cue; a throughput benchmark needs the
opposite: a server so cheap that the client measured is always the bottleneck. So this is
a bare asyncio `Protocol` (no streams, no tasks per connection) that answers every command
from a table, listening on several loopback addresses that share one port, as cbv dials
every MX on one configured port. It never offers STARTTLS: the benchmark measures the
callout engine, not OpenSSL.

Addresses exist when their local part is "u" followed by digits, the last one even
("u0001230"); everything else is 550 5.1.1. A random catch-all probe never matches.
An optional delay before each reply makes a slow farm, to hold thousands of callouts in
flight. The farm counts its connections and RCPTs and reports its own CPU time.
"""

from __future__ import annotations

import asyncio
import errno
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.helpers import Helper, cpu_seconds, raise_fd_limit, serve_requests

BANNER = b"220 farm.test ESMTP bench farm\r\n"
EHLO = b"250-farm.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n"
REPLIES = {
    b"HELO": b"250 farm.test\r\n",
    b"MAIL": b"250 2.1.0 Ok\r\n",
    b"RSET": b"250 2.0.0 Ok\r\n",
    b"NOOP": b"250 2.0.0 Ok\r\n",
    b"VRFY": b"252 2.0.0 Send some mail, I'll try my best\r\n",
}
RCPT_OK = b"250 2.1.5 Ok\r\n"
RCPT_UNKNOWN = b"550 5.1.1 <%s>: Recipient address rejected: User unknown\r\n"
BYE = b"221 2.0.0 Bye\r\n"
UNKNOWN_COMMAND = b"502 5.5.2 Error: command not recognized\r\n"
MAX_LINE = 4096
BACKLOG = 8192  # the kernel caps it at net.core.somaxconn
BIND_ATTEMPTS = 20


def mailbox_exists(local: bytes) -> bool:
    """The farm's one rule: "u", digits, and an even last digit."""
    return local[:1] == b"u" and local[1:].isdigit() and local[-1] in b"02468"


@dataclass
class FarmStats:
    connections: int = 0
    open: int = 0
    peak_open: int = 0
    rcpts: int = 0
    rcpts_accepted: int = 0


class SMTPFarmProtocol(asyncio.Protocol):
    """One connection: a line buffer and a table lookup per command."""

    def __init__(self, farm: Farm) -> None:
        self.farm = farm
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.host = ""
        self.domain: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        stats = self.farm.stats
        stats.connections += 1
        stats.open += 1
        stats.peak_open = max(stats.peak_open, stats.open)
        self.host = transport.get_extra_info("sockname")[0]
        self.farm.sessions.opened(self.host)
        self.send(BANNER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.farm.stats.open -= 1
        self.farm.sessions.closed(self.host)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        replies: list[bytes] = []
        close = False
        while not close and (end := self.buffer.find(b"\n")) >= 0:
            line, self.buffer = self.buffer[:end].rstrip(b"\r"), self.buffer[end + 1 :]
            reply, close = self.answer(line)
            replies.append(reply)
        if len(self.buffer) > MAX_LINE:
            replies.append(b"500 5.5.2 Error: line too long\r\n")
            close = True
        if replies:
            self.send(b"".join(replies), close)

    def answer(self, line: bytes) -> tuple[bytes, bool]:
        verb = line[:4].upper()
        if verb == b"RCPT":
            path = line.partition(b"<")[2].partition(b">")[0]
            self.farm.stats.rcpts += 1
            if self.domain is None:
                self.domain = path.rpartition(b"@")[2].lower()
                self.farm.sessions.asked(self.domain.decode(errors="replace"))
            if mailbox_exists(path.partition(b"@")[0]):
                self.farm.stats.rcpts_accepted += 1
                return RCPT_OK, False
            return RCPT_UNKNOWN % path, False
        if verb == b"EHLO":
            return EHLO, False
        if verb == b"QUIT":
            return BYE, True
        return REPLIES.get(verb, UNKNOWN_COMMAND), False

    def send(self, data: bytes, close: bool = False) -> None:
        if self.farm.delay > 0:
            asyncio.get_running_loop().call_later(self.farm.delay, self.write, data, close)
        else:
            self.write(data, close)

    def write(self, data: bytes, close: bool) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        if close:
            self.transport.close()


class Sessions:
    """Who the farm's sessions were for: when each domain's sessions began (its first RCPT),
    and the most sessions open at once on each host address; what budgets are checked by."""

    def __init__(self) -> None:
        self.started_by_domain: dict[str, list[float]] = {}
        self.open_by_host: dict[str, int] = {}
        self.peak_by_host: dict[str, int] = {}

    def opened(self, host: str) -> None:
        now_open = self.open_by_host[host] = self.open_by_host.get(host, 0) + 1
        self.peak_by_host[host] = max(self.peak_by_host.get(host, 0), now_open)

    def closed(self, host: str) -> None:
        self.open_by_host[host] -= 1

    def asked(self, domain: str) -> None:
        self.started_by_domain.setdefault(domain, []).append(time.monotonic())

    def report(self) -> dict[str, Any]:
        return {"started_by_domain": self.started_by_domain, "peak_by_host": self.peak_by_host}


class Farm:
    """The servers of one farm process; `delay` may change between measurements."""

    def __init__(self) -> None:
        self.stats = FarmStats()
        self.sessions = Sessions()
        self.delay = 0.0
        self.servers: list[asyncio.Server] = []

    async def start(self, hosts: Sequence[str], ports: Sequence[int]) -> tuple[int, str]:
        """Listen on every host at the first port of `ports` free on all; 0 is any port.

        Returns the port and, if an earlier choice failed, why.
        """
        notes: list[str] = []
        for wanted in ports:
            for _ in range(BIND_ATTEMPTS if wanted == 0 else 1):
                try:
                    return await self._listen(hosts, wanted), "; ".join(notes)
                except OSError as exc:
                    await self.close()
                    if wanted == 0 and exc.errno == errno.EADDRINUSE:
                        continue  # a random port taken on one host: try another
                    notes.append(f"port {wanted}: {exc.strerror or exc}")
                    break
        raise OSError(f"cannot listen on {', '.join(hosts)}: {'; '.join(notes)}")

    async def _listen(self, hosts: Sequence[str], port: int) -> int:
        loop = asyncio.get_running_loop()
        for host in hosts:
            server = await loop.create_server(
                lambda: SMTPFarmProtocol(self), host, port, backlog=BACKLOG
            )
            self.servers.append(server)
            port = server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for server in self.servers:
            server.close()
        self.servers.clear()

    def report(self) -> dict[str, Any]:
        return {**asdict(self.stats), "cpu": cpu_seconds()}

    def set_delay(self, seconds: float) -> None:
        self.delay = seconds

    def reset_peak(self) -> None:
        self.stats.peak_open = self.stats.open


def farm_main(conn: Connection, hosts: list[str], ports: list[int], lifetime: float) -> None:
    """The farm process: its event loop in a thread, requests answered on this one."""
    raise_fd_limit()
    loop = asyncio.new_event_loop()
    farm = Farm()
    try:
        port, note = loop.run_until_complete(farm.start(hosts, ports))
    except OSError as exc:
        conn.send(("error", str(exc)))
        return
    thread = threading.Thread(target=loop.run_forever, name="farm", daemon=True)
    thread.start()
    conn.send(("ok", {"port": port, "note": note}))
    handlers: dict[str, Callable[..., Any]] = {
        "stats": farm.report, "delay": farm.set_delay, "reset_peak": farm.reset_peak,
        "sessions": farm.sessions.report,
    }
    try:
        serve_requests(conn, handlers, lifetime)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10.0)


class FarmProcess(Helper):
    """The farm in its own process; `port` is where it listens on every host."""

    def __init__(self, hosts: Sequence[str], ports: Sequence[int] = (25, 0),
                 lifetime: float = 3600.0) -> None:
        super().__init__("mx-farm", farm_main, list(hosts), list(ports), lifetime)
        self.hosts = list(hosts)
        self.port: int = self.info["port"]
        self.note: str = self.info["note"]

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("stats")
        return result

    def set_delay(self, seconds: float) -> None:
        self.call("delay", seconds)

    def reset_peak(self) -> None:
        self.call("reset_peak")

    def sessions(self) -> dict[str, Any]:
        """{"started_by_domain": {domain: [monotonic seconds]}, "peak_by_host": {ip: n}}."""
        found: dict[str, Any] = self.call("sessions")
        return found
