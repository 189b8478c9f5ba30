"""`cbv serve`: opens the listeners, reloads on SIGHUP, drains and exits on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from cbv.config import Config, ConfigError, LogConfig, ServerConfig, config_source, load_config
from cbv.endpoint import Endpoint
from cbv.gc_clock import collect_on_a_clock
from cbv.gc_tuning import tune_for_many_connections
from cbv.providers import read_suffix_list
from cbv.servers.connection import ConnectionTracker
from cbv.servers.event_loop import loop_name
from cbv.servers.jobs import JobsRunning
from cbv.servers.listen import ListenError, bound_endpoint, listen, remove_socket_file
from cbv.servers.logs import event
from cbv.servers.metrics import Telemetry
from cbv.servers.milter import MilterConnection
from cbv.servers.postfix import PolicyConnection
from cbv.servers.runtime import Generation, Runtime
from cbv.servers.smtpcbd import CallbackConnection

LOG = logging.getLogger("cbv.daemon")
# On uvloop: seconds a thread waits for the interpreter lock before the event loop must
# let it go (Python's own: 5 ms). uvloop lets go of the lock around every callback and takes
# it straight back, and each time wakes a thread that waits for it: the decision log's
# writer, woken ~200 times per batch, cost 5-8 µs of CPU per decision at the policy
# listener's maximum rate; at 0.5 ms, 41-44 µs per decision instead of 51-52. Not on
# asyncio, which lets go of the lock only around its system calls: there the SQLite
# cache's threads, busy during a burst of new verdicts, cost 12-16% more CPU with it
# (docs/benchmarks.md, "The decision log's writer on uvloop").
LOCK_WAIT = 0.0005
ConnectionFactory = Callable[[Runtime, ConnectionTracker], asyncio.Protocol]
# The listeners by their [server] key: what the start-up line calls them, and the
# protocol class each accepted connection gets.
LISTENERS: dict[str, tuple[str, ConnectionFactory]] = {
    "policy": ("Postfix check_policy_service", PolicyConnection),
    "smtpcbd": ("qpsmtpd smtp_callback, Exim readsocket", CallbackConnection),
    "milter": ("Postfix smtpd_milters, Sendmail INPUT_MAIL_FILTER", MilterConnection),
}


class Service(Protocol):
    """A listener with a server of its own, on sockets bound as `listen()` binds them."""

    async def open(self, endpoint: Endpoint) -> asyncio.Server: ...

    async def close(self, grace: float) -> None: ...


def http_listener(runtime: Runtime) -> Service:
    """FastAPI and uvicorn are imported when the HTTP listener first opens, not by a daemon
    that has none (the built-in defaults)."""
    from cbv.servers.web import HttpListener

    return HttpListener(runtime)


# Built once per daemon, on first use; kept across reloads.
SERVICES: dict[str, tuple[str, Callable[[Runtime], Service]]] = {
    "http": ("HTTP API, /metrics, status page", http_listener),
}
DESCRIPTIONS = {name: entry[0] for name, entry in (LISTENERS | SERVICES).items()}
SWEEP_EVERY = 30.0
LATE_SWEEP_EVERY = 0.25

Listener = tuple[Endpoint, asyncio.Server]


class Daemon:
    """The long-running process; `run()` is what the CLI calls, the rest serves tests."""

    def __init__(self, config: Config, config_path: Path | None = None,
                 announce: Callable[[str], None] = print,
                 configure_logs: Callable[[LogConfig], None] | None = None) -> None:
        """`announce` says where each listener listens; `configure_logs`, if given, is
        called again with the [log] section of each reloaded config."""
        self._config = config
        self._config_path = config_path
        self._announce = announce
        self._configure_logs = configure_logs
        self._tracker = ConnectionTracker()
        self._listeners: dict[str, Listener] = {}
        self._runtime: Runtime | None = None
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task[object]] = set()
        self.telemetry = Telemetry()
        self._services: dict[str, Service] = {}
        self._jobs: JobsRunning | None = None

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("the daemon is not started")
        return self._runtime

    @property
    def connections(self) -> int:
        return len(self._tracker)

    def addresses(self) -> dict[str, str]:
        """Where each listener really listens (a port 0 in the config is resolved)."""
        return {name: str(bound_endpoint(server, endpoint))
                for name, (endpoint, server) in self._listeners.items()}

    async def run(self) -> None:
        """Until SIGTERM or SIGINT (or `stop()`); SIGHUP reloads the configuration."""
        switch_interval = sys.getswitchinterval()
        if loop_name(asyncio.get_running_loop()) == "uvloop":
            sys.setswitchinterval(LOCK_WAIT)
        try:
            await self._run()
        finally:
            sys.setswitchinterval(switch_interval)

    async def _run(self) -> None:
        await self.start()
        gc.collect()  # what start-up left over, before what it built is frozen for good
        tune_for_many_connections()
        self._spawn(collect_on_a_clock())
        loop = asyncio.get_running_loop()
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(stop_signal, self._stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_soon)
        try:
            await self._stopping.wait()
            event(LOG, logging.INFO, "stopping", connections=self.connections)
        finally:
            for used in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(used)
            await self.shutdown()

    def stop(self) -> None:
        """What SIGTERM does, for a daemon run inside a larger program."""
        self._stopping.set()

    async def start(self) -> None:
        read_suffix_list()  # before any listener opens
        self._runtime = Runtime(Generation(self._config, self.telemetry), self.telemetry)
        try:
            if self._config.jobs.enabled:
                self._jobs = JobsRunning(self._runtime, self._config)
                self._runtime.jobs = self._jobs.service
            self._listeners = await self._open(self._config.server, {})
        except (ListenError, ConfigError):
            if self._jobs is not None:
                await self._jobs.close(0.1)
            await self._runtime.close(0.1)
            raise
        for name, endpoint in self._config.server.endpoints().items():
            if name not in SERVICES and not endpoint.is_loopback:
                event(LOG, logging.WARNING, "listener beyond loopback: its protocol has no "
                      "authentication, admit only your mail servers", listener=name,
                      address=str(endpoint))
        for name, address in self.addresses().items():
            self._announce(f"cbv: {name} listening on {address} ({DESCRIPTIONS[name]})")
        source = config_source(self._config_path)
        event(LOG, logging.INFO, "started", config=str(source or "built-in defaults"),
              event_loop=loop_name(asyncio.get_running_loop()), **self.addresses())
        self._spawn(self._sweep_idle())
        self._spawn(self._sweep_late())

    async def reload(self) -> bool:
        """Build everything from the config file anew; on any problem keep the running one."""
        async with self._reload_lock:
            try:
                config = load_config(self._config_path)
                generation = Generation(config, self.telemetry)
            except (ConfigError, OSError, ValueError) as exc:
                event(LOG, logging.ERROR, "reload refused, configuration unchanged",
                      error=str(exc))
                return False
            try:
                listeners = await self._open(config.server, self._listeners)
            except ListenError as exc:
                await generation.close(0.1)
                event(LOG, logging.ERROR, "reload refused, configuration unchanged",
                      error=str(exc))
                return False
            for name, (endpoint, server) in self._listeners.items():
                if listeners.get(name, (None, None))[1] is not server:
                    server.close()
                    remove_socket_file(endpoint)
            self._listeners = listeners
            self._config = config
            self.runtime.replace(generation)
            if self._configure_logs is not None:
                self._configure_logs(config.log)
            event(LOG, logging.INFO, "configuration reloaded", **self.addresses())
            return True

    async def shutdown(self) -> None:
        """Stop accepting, answer what is in flight, let callouts land, flush the cache."""
        grace = self._config.server.shutdown_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for _, server in self._listeners.values():
            server.close()
        closing = [service.close(grace) for service in self._services.values()]
        aborted, *_ = await asyncio.gather(self._tracker.drain(grace), *closing)
        if aborted:
            event(LOG, logging.WARNING, "connections cut short", count=aborted)
        if self._jobs is not None:
            await self._jobs.close(max(deadline - loop.time(), 0.1))
        await self.runtime.close(max(deadline - loop.time(), 0.1))
        for endpoint, _ in self._listeners.values():
            remove_socket_file(endpoint)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        event(LOG, logging.INFO, "stopped")

    async def _open(self, config: ServerConfig, running: dict[str, Listener]
                    ) -> dict[str, Listener]:
        """The listeners `config` names; those already open on the same address are kept."""
        opened: dict[str, Listener] = {}
        result: dict[str, Listener] = {}
        try:
            for name, endpoint in config.endpoints().items():
                current = running.get(name)
                if current is not None and endpoint in (current[0],
                                                        bound_endpoint(current[1], current[0])):
                    result[name] = current
                    continue
                if name in SERVICES:
                    if name not in self._services:
                        self._services[name] = SERVICES[name][1](self.runtime)
                    server = await self._services[name].open(endpoint)
                else:
                    factory = partial(LISTENERS[name][1], self.runtime, self._tracker)
                    server = await listen(endpoint, factory)
                opened[name] = result[name] = (endpoint, server)
        except ListenError as exc:
            for endpoint, server in opened.values():
                server.close()
                remove_socket_file(endpoint)
            raise ListenError(f"{name} listener: {exc}") from None
        return result

    def _reload_soon(self) -> None:
        self._spawn(self.reload())

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _sweep_idle(self) -> None:
        while True:
            idle = self._config.server.idle_timeout
            await asyncio.sleep(min(SWEEP_EVERY, idle / 4))
            self._tracker.close_idle(idle)

    async def _sweep_late(self) -> None:
        """Late answers go out at most a quarter of answer_within (or 0.25 s) late."""
        while True:
            within = self._config.server.answer_within
            await asyncio.sleep(min(LATE_SWEEP_EVERY, within / 4))
            self._tracker.answer_overdue(within)
