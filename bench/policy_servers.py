"""The two policy servers the benchmark compares, each run in a process of its own.

- `cbv_server`: `cbv serve`'s Daemon, its JSON decision log written to a file, with a fake
  DNS and a fake MX in the same process so the senders' first verdicts can be made (and
  cached) before anything is timed.
- `reference_server`: the least a Postfix policy server can be in asyncio, answering from
  a dict. It parses the request and looks the sender up; nothing else.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any, TextIO

from bench.helpers import cpu_seconds, loopback_only, raise_fd_limit, serve_requests, status_mb

if TYPE_CHECKING:
    from cbv.config import Config

LIFETIME = 900.0  # seconds a server process lives at most
DOMAIN = "bench.test"
MX_HOST = "127.0.0.2"
SENDERS_AT_MOST = 10_000  # the fake MX is ours: no need to spare it while the cache fills


HOLD_SECONDS = 0.001  # a callback that holds the event loop longer is counted


class LoopHolds:
    """The callbacks that held an asyncio event loop longer than HOLD_SECONDS, counted
    between `start` and `stop`: every request that came meanwhile waited behind them,
    however quiet the machine. (uvloop's callbacks are its own, not counted.)"""

    def __init__(self) -> None:
        self._original: Callable[[asyncio.Handle], None] | None = None
        self._count = 0
        self._longest = 0.0

    def start(self) -> None:
        if self._original is not None:
            return
        original = self._original = asyncio.Handle._run
        self._count, self._longest = 0, 0.0

        def timed(handle: asyncio.Handle) -> None:
            started = time.perf_counter()
            original(handle)
            held = time.perf_counter() - started
            if held > self._longest:
                self._longest = held
            if held > HOLD_SECONDS:
                self._count += 1

        asyncio.Handle._run = timed  # type: ignore[method-assign, assignment]

    def stop(self) -> tuple[int, float]:
        """(callbacks over HOLD_SECONDS, the longest callback's seconds) since `start`."""
        if self._original is not None:
            asyncio.Handle._run = self._original  # type: ignore[method-assign, assignment]
            self._original = None
        return self._count, self._longest


def _serve_in_thread(conn: Connection, loop: asyncio.AbstractEventLoop,
                     info: dict[str, Any], stop: asyncio.Event,
                     count: Any) -> threading.Thread:
    """Answer the parent's requests on the pipe while the event loop serves clients."""
    holds = LoopHolds()
    handlers = {
        "cpu": cpu_seconds,
        "rss": lambda: status_mb("VmRSS"),
        "connections": count,
        "holds_start": holds.start,
        "holds_stop": holds.stop,
    }

    def run() -> None:
        conn.send(("ok", info))
        serve_requests(conn, handlers, LIFETIME)
        loop.call_soon_threadsafe(stop.set)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def reference_server(conn: Connection, answers: dict[str, str]) -> None:
    raise_fd_limit()
    loopback_only({})
    connections: set[asyncio.StreamWriter] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.add(writer)
        while True:
            try:
                request = await reader.readuntil(b"\n\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            attributes = dict(
                line.split("=", 1) for line in request.decode().split("\n") if "=" in line
            )
            action = answers.get(attributes.get("sender", ""), "DUNNO")
            writer.write(f"action={action}\n\n".encode())
        connections.discard(writer)
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=2048)
        host, port = server.sockets[0].getsockname()[:2]
        stop = asyncio.Event()
        _serve_in_thread(conn, asyncio.get_running_loop(), {"address": f"{host}:{port}"},
                         stop, lambda: len(connections))
        await stop.wait()
        server.close()

    asyncio.run(main())


def cbv_server(conn: Connection, log_path: str, event_loop: str = "asyncio") -> None:
    """The daemon with only its policy listener, for the policy benchmark."""
    cbv_daemon(conn, log_path, {"policy": "127.0.0.1:0", "smtpcbd": ""}, event_loop)


@asynccontextmanager
async def bench_config(listeners: dict[str, str]) -> AsyncIterator[Config]:
    """A daemon's config with `listeners`, while a fake DNS and MX run in this process: the
    senders' first verdicts can be made (and cached) before anything is measured."""
    from cbv.config import config_from_dict
    from cbv.testing import FakeDNS, MXScript, Reply, ScriptedMX

    with FakeDNS() as dns:
        dns.add_mx(DOMAIN, [(10, f"mx.{DOMAIN}")])
        dns.add_a(f"mx.{DOMAIN}", MX_HOST)
        script = MXScript(rcpt=[(f"pass-*@{DOMAIN}", Reply(250, "2.1.5 Ok"))])
        async with ScriptedMX(host=MX_HOST, script=script) as mx:
            yield config_from_dict({
                "dns": {"nameservers": [dns.nameserver]},
                "callout": {"port": mx.port, "helo_name": "verifier.bench.test"},
                "security": {"allowed_target_networks": ["127.0.0.0/8"]},
                "cache": {"url": "memory://"},
                "limits": {f"{unit}_{key}": value
                           for unit in ("domain", "ip", "network", "provider")
                           for key, value in (("per_minute", 1e6),
                                              ("burst", SENDERS_AT_MOST))},
                "server": listeners,
            }, "bench")


def cbv_daemon(conn: Connection, log_path: str, listeners: dict[str, str],
               event_loop: str = "asyncio") -> None:
    """`cbv serve`'s Daemon with `listeners`, a fake DNS and MX, in its own process, on
    `event_loop` ("asyncio" or "uvloop"); it publishes every listener's address, and the
    policy one as "address" too, where the policy benchmark looks for each server it
    compares."""
    raise_fd_limit()
    loopback_only({})
    from cbv.config import LogConfig
    from cbv.servers.daemon import Daemon
    from cbv.servers.event_loop import loop_factory
    from cbv.servers.logs import configure_logging

    async def main(log: TextIO) -> None:
        async with bench_config(listeners) as config:
            configure_logging(LogConfig(format="json"), log)
            started = asyncio.Event()
            daemon = Daemon(config, announce=lambda line: started.set())
            running = asyncio.create_task(daemon.run())  # as `cbv serve` runs it
            announced = asyncio.create_task(started.wait())
            await asyncio.wait({running, announced}, return_when=asyncio.FIRST_COMPLETED)
            if running.done():
                running.result()  # it could not start: its error goes to the parent
            stop = asyncio.Event()
            addresses = daemon.addresses()
            _serve_in_thread(conn, asyncio.get_running_loop(),
                             {"address": addresses["policy"], **addresses}, stop,
                             lambda: daemon.connections)
            await stop.wait()
            daemon.stop()
            await running

    with (open(log_path, "w", encoding="utf-8") as log,
          asyncio.Runner(loop_factory=loop_factory(event_loop)) as runner):
        runner.run(main(log))
