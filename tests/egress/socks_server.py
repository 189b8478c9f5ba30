"""Our own microsocks (a real SOCKS5 server from Debian) on a loopback port, stopped by its pid.

Without microsocks, tests that need it skip with one line, or fail under CI=true.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

import pytest

START_TIMEOUT = 10.0


def require_microsocks() -> str:
    path = shutil.which("microsocks")
    if path is not None:
        return path
    message = "microsocks is not installed (scripts/install-test-deps installs it)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class SocksServer:
    """Listens on `host`:`port`; its connections onward leave from `bind` (so a scripted MX
    can tell them from cbv's own)."""

    process: subprocess.Popen[bytes]
    host: str
    port: int
    bind: str
    username: str = ""
    password: str = ""

    @property
    def url(self) -> str:
        auth = f"{self.username}:{self.password}@" if self.username else ""
        return f"socks5://{auth}{self.host}:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)


def start_socks(bind: str = "127.0.0.60", username: str = "", password: str = "",
                host: str = "127.0.0.1") -> SocksServer:
    port = free_port(host)
    command = [require_microsocks(), "-i", host, "-p", str(port), "-b", bind]
    if username:
        command += ["-u", username, "-P", password]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = SocksServer(process, host, port, bind, username, password)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"microsocks exited with status {process.returncode}")
        try:
            socket.create_connection((host, port), timeout=1).close()
            return server
        except OSError:
            time.sleep(0.01)  # polling the port until it listens; nothing else to wait on
    server.stop()
    raise RuntimeError(f"microsocks on {host}:{port} did not listen")


class SocksFactory(Protocol):
    def __call__(self, bind: str = "127.0.0.60", username: str = "", password: str = ""
                 ) -> SocksServer: ...


@pytest.fixture
def socks_factory() -> Iterator[SocksFactory]:
    started: list[SocksServer] = []

    def factory(bind: str = "127.0.0.60", username: str = "", password: str = "") -> SocksServer:
        server = start_socks(bind, username, password)
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()
