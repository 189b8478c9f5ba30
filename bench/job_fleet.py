"""A fleet of real `cbv serve` job workers on loopback, for the job tests and `bench jobs`.

The world is big and cheap: a FakeDNS in a process of its own publishing `domains` domains,
each with one MX among `hosts` farm hosts, and the bench's fast MX farm
(its own process; an address exists when its local part is "u", digits, the last even).
Workers are `cbv serve` processes with only the HTTP listener, sharing one job queue (a
Redis we started, or one SQLite file); each is stopped or killed by its own pid.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx

from bench.helpers import Helper, cpu_seconds, serve_requests
from bench.mx_farm import FarmProcess, mailbox_exists

CBV = Path(sys.executable).with_name("cbv")
START_TIMEOUT = 30.0
HELO = "jobs.cbv.test"


def domain_name(index: int) -> str:
    return f"d{index:05d}.jobs.test"


def host_name(index: int) -> str:
    """One provider per host (its own registrable domain), as unrelated domains' MX hosts are."""
    return f"mx.farm{index}.test"


def host_ip(index: int) -> str:
    """One /24 per host, as unrelated domains' MX hosts are: with every budget at its
    default, the per-address one binds first (up to 250 hosts)."""
    return f"127.0.{index + 2}.1"


def fleet_dns_main(conn: Connection, domains: int, hosts: int, lifetime: float) -> None:
    from cbv.testing import FakeDNS

    fake = FakeDNS()
    for h in range(hosts):
        fake.add_a(host_name(h), host_ip(h))
    for i in range(domains):
        fake.add_mx(domain_name(i), [(10, host_name(i % hosts))])
    fake.start()
    conn.send(("ok", {"nameserver": fake.nameserver}))
    try:
        serve_requests(conn, {"cpu": cpu_seconds}, lifetime)
    finally:
        fake.stop()


def addresses(domains: int, per_domain: int) -> list[str]:
    """Domain by domain, so the list is what a mailing list export looks like."""
    return [f"u{d:05d}{k:03d}@{domain_name(d)}" for d in range(domains)
            for k in range(per_domain)]


def expected_result(address: str) -> str:
    return "pass" if mailbox_exists(address.partition("@")[0].encode()) else "fail"


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    url: str


@dataclass
class Fleet:
    """`queue` is a redis:// URL or a SQLite path; `callout`, `limits` and `jobs` are TOML
    lines for those tables of each worker's config."""

    directory: Path
    queue: str
    domains: int
    hosts: int
    jobs: str = ""
    limits: str = ""
    callout: str = ""
    farm_delay: float = 0.0
    workers: list[Worker] = field(default_factory=list)
    _helpers: list[Helper] = field(default_factory=list)

    def start_world(self) -> None:
        dns = Helper("fleet-dns", fleet_dns_main, self.domains, self.hosts, 3600.0)
        self._helpers.append(dns)
        self.farm = FarmProcess([host_ip(h) for h in range(self.hosts)], ports=(0,))
        self._helpers.append(self.farm)
        self.farm.set_delay(self.farm_delay)
        self.config = self.directory / "cbv.toml"
        cache = f'url = "{self.queue}"' if self.queue.startswith("redis") else \
            'url = "memory://"'
        queue = self.queue if self.queue.startswith("redis") else f"sqlite://{self.queue}"
        self.config.write_text(f"""
[dns]
nameservers = ["{dns.info['nameserver']}"]
[callout]
port = {self.farm.port}
helo_name = "{HELO}"
detect_catch_all = false
{self.callout}
[security]
allowed_target_networks = ["127.0.0.0/8"]
[cache]
{cache}
[server]
policy = ""
smtpcbd = ""
http = "127.0.0.1:0"
[log]
format = "json"
[limits]
{self.limits}
[jobs]
enabled = true
queue = "{queue}"
{self.jobs}
""")

    def start_worker(self) -> Worker:
        env = {k: v for k, v in os.environ.items() if k not in ("CBV_CONFIG", "XDG_STATE_HOME")}
        env.update(HOME=str(self.directory / "home"),
                   XDG_STATE_HOME=str(self.directory / "state"))
        log = (self.directory / f"worker-{len(self.workers)}.log").open("ab")
        process = subprocess.Popen([str(CBV), "serve", "--config", str(self.config)],
                                   stdout=subprocess.PIPE, stderr=log, env=env)
        log.close()
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
        line = process.stdout.readline().decode() if ready else ""
        if "http listening on" not in line:
            process.kill()
            process.wait(10)
            raise RuntimeError(f"cbv serve did not start: {line!r}; see {self.directory}")
        address = line.split("listening on ")[1].split(" ")[0]
        worker = Worker(process, f"http://{address}")
        self.workers.append(worker)
        return worker

    def start(self, count: int) -> None:
        self.start_world()
        for _ in range(count):
            self.start_worker()

    def api(self, worker: Worker | None = None) -> httpx.Client:
        chosen = worker or next(w for w in self.workers if w.process.poll() is None)
        return httpx.Client(base_url=chosen.url, timeout=60.0, trust_env=False)

    def submit(self, addresses: Sequence[str], **params: Any) -> str:
        with self.api() as client:
            answer = client.post("/v1/jobs", json=list(addresses), params=params)
            answer.raise_for_status()
            job_id: str = answer.json()["id"]
            return job_id

    def status(self, job_id: str) -> dict[str, Any]:
        with self.api() as client:
            found: dict[str, Any] = client.get(f"/v1/jobs/{job_id}").json()
            return found

    def wait(self, job_id: str, timeout: float, done_at_least: int | None = None
             ) -> dict[str, Any]:
        """Until the job is finished (or has `done_at_least` final verdicts)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status["state"] in ("done", "cancelled") or (
                    done_at_least is not None and status["done"] >= done_at_least):
                return status
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} not there within {timeout} s: {status}")
            time.sleep(0.1)  # polling the API, as a client does

    def results(self, job_id: str) -> list[dict[str, Any]]:
        with self.api() as client:
            text = client.get(f"/v1/jobs/{job_id}/results").text
        return [json.loads(line) for line in text.splitlines()]

    def kill(self, worker: Worker) -> None:
        """SIGKILL, as a crash would: nothing is flushed or released."""
        worker.process.kill()
        worker.process.wait(10)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in self.workers:
            try:
                worker.process.wait(15)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait(5)
        for helper in self._helpers:
            helper.stop()
