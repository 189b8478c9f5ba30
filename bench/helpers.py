"""Process plumbing for benchmarks: helper servers and measurements, each in a process of its own.

Each measurement runs in a fresh process, so the CPU time and peak RSS it reports are its own
and not what an earlier measurement left behind. Helper servers (a fake MX farm, a fake DNS)
run in processes of their own too: their CPU is not billed to the code measured, they do not
compete with it for the GIL, and they can report their own CPU to show they were not the
bottleneck. Every process started here stops by itself: on request, when the pipe to its
parent closes, or at the end of a bounded lifetime.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import resource
import socket
import time
from collections.abc import Callable, Mapping
from ipaddress import ip_address
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

SPAWN = multiprocessing.get_context("spawn")  # no inherited threads, sockets or memory


def cpu_seconds() -> float:
    """User plus system CPU time of this process, all threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_seconds() -> float:
    """CPU time used on the whole machine since boot, all cores (/proc/stat), stolen time too:
    with our own processes' CPU subtracted, it shows what else competed for the cores."""
    with open("/proc/stat", encoding="ascii") as stat:
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(
            int, stat.readline().split()[1:9]
        )
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def status_mb(field: str) -> float:
    """A memory figure from /proc/self/status, e.g. VmRSS (now) or VmHWM (peak RSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise KeyError(field)


def raise_fd_limit() -> None:
    """Thousands of sockets in flight need more than the usual 1024 descriptors."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def loopback_only(names: Mapping[str, str]) -> None:
    """Refuse, in this process, any name lookup that could reach the system resolver.

    `names` maps the fake farm's host names to loopback addresses, as an /etc/hosts would;
    every other name, and every address outside loopback, is an error.
    """
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0,
                    proto: int = 0, flags: int = 0) -> Any:
        text = host.decode() if isinstance(host, bytes) else str(host)
        target = names.get(text.lower().rstrip("."), text)
        try:
            allowed = ip_address(target).is_loopback
        except ValueError:
            allowed = False
        if not allowed:
            raise socket.gaierror(socket.EAI_NONAME, f"benchmark: refusing to resolve {text!r}")
        return real_getaddrinfo(target, port, family, type, proto, flags | socket.AI_NUMERICHOST)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, f"benchmark: refusing to resolve {args!r}")

    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = socket.gethostbyname_ex = socket.gethostbyaddr = refuse


class Helper:
    """A server process driven by (command, *args) requests over a pipe.

    `target(conn, *args)` must send ("ok", info) once it is ready (or ("error", text)),
    then answer requests with `serve_requests`.
    """

    def __init__(self, name: str, target: Callable[..., None], *args: Any,
                 start_timeout: float = 30.0) -> None:
        self.name = name
        self._conn, child = SPAWN.Pipe()
        self.process = SPAWN.Process(target=target, args=(child, *args), name=name, daemon=True)
        self.process.start()
        child.close()
        try:
            self.info: Any = self._receive(start_timeout)
        except BaseException:
            self.stop()
            raise

    def call(self, command: str, *args: Any, timeout: float = 60.0) -> Any:
        self._conn.send((command, *args))
        return self._receive(timeout)

    def _receive(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise TimeoutError(f"{self.name}: no answer within {timeout} s")
        try:
            status, value = self._conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.name} exited ({self.process.exitcode})") from None
        if status != "ok":
            raise RuntimeError(f"{self.name}: {value}")
        return value

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError, RuntimeError, TimeoutError):
                self.call("stop", timeout=10.0)
            self.process.join(10.0)
        if self.process.is_alive():
            self.process.terminate()  # our own child, by its pid
            self.process.join(5.0)
        self._conn.close()


def serve_requests(conn: Connection, handlers: Mapping[str, Callable[..., Any]],
                   lifetime: float) -> None:
    """The helper's side: answer until "stop", until the parent is gone, or `lifetime` ends."""
    deadline = time.monotonic() + lifetime
    while (left := deadline - time.monotonic()) > 0:
        if not conn.poll(min(left, 1.0)):
            continue
        try:
            command, *args = conn.recv()
        except EOFError:
            return
        if command == "stop":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", handlers[command](*args)))
        except Exception as exc:
            conn.send(("error", f"{command}: {type(exc).__name__}: {exc}"))


def _run_and_send(conn: Connection, function: Callable[..., Any], *args: Any) -> None:
    try:
        conn.send(("ok", function(*args)))
    except BaseException as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        raise


def run_isolated(function: Callable[..., Any], *args: Any, timeout: float) -> Any:
    """`function(*args)` in a fresh process; its (picklable) result, or RuntimeError."""
    parent, child = SPAWN.Pipe(duplex=False)
    process = SPAWN.Process(target=_run_and_send, args=(child, function, *args), daemon=True)
    process.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise TimeoutError(f"{function.__name__}: no result within {timeout} s")
        try:
            status, value = parent.recv()
        except EOFError:
            raise RuntimeError(f"{function.__name__} died ({process.exitcode})") from None
    finally:
        process.join(10.0)
        if process.is_alive():
            process.terminate()
            process.join(5.0)
        parent.close()
    if status != "ok":
        raise RuntimeError(f"{function.__name__}: {value}")
    return value


BENCHMARKS_DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def write_docs_section(name: str, section: str, path: Path = BENCHMARKS_DOC) -> None:
    """Replace benchmark `name`'s section between its markers, or add it: each benchmark
    owns its own section of the file and leaves the others alone."""
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{begin}\n{section}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        text = head + block + rest.partition(end)[2]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
