"""Our own redis-server processes on random loopback ports: standalone and a 3-master Cluster.

Nothing here touches a Redis we did not start: each process runs in a temp dir with
persistence off and is stopped by its pid. Without redis-server, tests that need it
skip with one line, or fail under CI=true.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.missing import missing

START_TIMEOUT = 10.0
CLUSTER_TIMEOUT = 20.0
PORT_RANGE = (20_000, 45_000)  # the Cluster bus listens on port + 10000


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is not None:
        return path
    missing("redis-server is not installed (scripts/install-test-deps installs it)")


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    for _ in range(200):
        port = random.randint(*PORT_RANGE)
        if _port_is_free(port) and _port_is_free(port + 10_000):
            return port
    raise RuntimeError("no free loopback port for redis-server")


class RedisProcess:
    """One redis-server we started; `kill()` and `start()` again keep the same port."""

    def __init__(self, directory: Path, *, cluster: bool = False, durable: bool = False
                 ) -> None:
        """`durable`: every write in the append-only file before it is answered, so a
        restart after kill -9 finds all that was acknowledged."""
        self.binary = require_redis_server()
        self.directory = directory
        self.cluster = cluster
        self.durable = durable
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "yes" if self.durable else "no",
            "--appendfsync", "always", "--dir", str(self.directory),
        ]
        if self.cluster:
            command += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "2000",
            ]
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.directory}")
            try:
                if self.client().ping():
                    return
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        """SIGKILL, as a crash would; the data goes with it (persistence is off)."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(5)
            self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None:
            return
        os.kill(self.process.pid, signal.SIGCONT)
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None


class RedisCluster:
    """Three masters, no replicas: enough for keys to land on different nodes."""

    def __init__(self, directory: Path) -> None:
        self.nodes = [RedisProcess(directory / f"node{i}", cluster=True) for i in range(3)]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        redis_cli = shutil.which("redis-cli")
        assert redis_cli is not None, "redis-cli comes with redis-server"
        subprocess.run(
            [redis_cli, "--cluster", "create",
             *(f"127.0.0.1:{node.port}" for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=CLUSTER_TIMEOUT,
        )
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        while time.monotonic() < deadline:
            states = [node.client().cluster("info") for node in self.nodes]
            if all(state["cluster_state"] == "ok" for state in states):
                return
            time.sleep(0.05)
        raise RuntimeError("the redis cluster did not become ready")

    def flush(self) -> None:
        for node in self.nodes:
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def redis_standalone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_url(redis_standalone: RedisProcess) -> str:
    """The shared standalone server, emptied for this test."""
    redis_standalone.client().flushall()
    return redis_standalone.url


@pytest.fixture
def redis_cluster_url(redis_cluster: RedisCluster) -> str:
    redis_cluster.flush()
    return redis_cluster.url


@pytest.fixture
def redis_own(tmp_path: Path) -> Iterator[RedisProcess]:
    """A server for this test alone, to kill, pause and restart."""
    server = RedisProcess(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
