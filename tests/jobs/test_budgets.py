"""Budgets are a schedule, not a verdict: 400 addresses over 100 domains that share 4
slow MX hosts, with every budget at its default, through `cbv verify --file` and through a
job of two workers: every address decided, none `rate_limited`; the per-host cap and a
domain's budget held fleet-wide, counted at the farm.

The budget binds many times over. Each host (its own /24 and provider, so the per-address
budget is the one that binds) is offered 25 sessions at once; unhindered it would take
them 5 at a time in a quarter second each, 20 a second, against a budget of 3 at once and
then one a second. So the last session waits 22 s, over 4x `max_wait` (5 s): 68 of the
100 sessions could not be had within `max_wait`, and a path that answered instead of
waiting its turn would say `rate_limited` for each of their addresses."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.job_fleet import Fleet, addresses, domain_name, expected_result
from cbv.config import LimitsConfig

pytestmark = [pytest.mark.peers, pytest.mark.slow]
DOMAINS, PER_DOMAIN, HOSTS = 100, 4, 4
FARM_DELAY = 0.04  # seconds before each reply: a session takes about a quarter second
DEFAULTS = LimitsConfig()
CLI_TIMEOUT = 240.0


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    started: list[Fleet] = []
    yield started
    for fleet in started:
        fleet.stop()


def spaced_by_budget(starts: list[float], burst: int, per_minute: float) -> None:
    """Session starts, counted at the farm, as a budget of `burst` at once then
    `per_minute` lets them through. One interval of slack: a first session that arrives
    late (a loaded machine) makes the next ones look early by that much, never more."""
    starts = sorted(starts)
    interval = 60.0 / per_minute
    for n in range(burst, len(starts)):
        assert starts[n] - starts[0] >= (n - burst) * interval, (n, starts)


def each_hosts_budget_held(fleet: Fleet) -> None:
    """One session per domain, and each host's sessions as its default budget spaces them."""
    started = fleet.farm.sessions()["started_by_domain"]
    assert {domain: len(times) for domain, times in started.items()} == {
        domain_name(d): 1 for d in range(DOMAINS)}, "each domain's addresses share one session"
    for host in range(HOSTS):
        starts = [at for d in range(host, DOMAINS, HOSTS) for at in started[domain_name(d)]]
        spaced_by_budget(starts, DEFAULTS.ip_burst, DEFAULTS.ip_per_minute)


def decided_as_the_farm_says(verdicts: list[dict[str, object]], submitted: list[str]) -> None:
    assert [v["address"] for v in verdicts] == submitted
    assert Counter(str(v["reason"]) for v in verdicts) == Counter(
        "accepted" if expected_result(a) == "pass" else "mailbox_unknown" for a in submitted)


def test_cbv_verify_file_waits_its_turn_instead_of_answering_rate_limited(
        tmp_path: Path, fleets: list[Fleet]) -> None:
    fleet = Fleet(tmp_path, str(tmp_path / "jobs.sqlite3"), DOMAINS, HOSTS,
                  farm_delay=FARM_DELAY)
    fleets.append(fleet)
    fleet.start_world()
    submitted = addresses(DOMAINS, PER_DOMAIN)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(submitted) + "\n")
    ran = subprocess.run(
        [sys.executable, "-m", "cbv.cli", "verify", "--config", str(fleet.config), "--file",
         str(listing), "--json"], capture_output=True, timeout=CLI_TIMEOUT, check=False)
    assert ran.returncode == 0, ran.stderr.decode()
    decided_as_the_farm_says([json.loads(line) for line in ran.stdout.splitlines()], submitted)
    assert fleet.farm.stats()["peak_open"] <= HOSTS * DEFAULTS.mx_concurrency
    each_hosts_budget_held(fleet)


def test_a_job_on_two_workers_decides_every_address_within_shared_caps(
        redis_url: str, tmp_path: Path, fleets: list[Fleet]) -> None:
    fleet = Fleet(tmp_path, redis_url, DOMAINS, HOSTS, farm_delay=FARM_DELAY)
    fleets.append(fleet)
    fleet.start(2)
    submitted = addresses(DOMAINS, PER_DOMAIN)
    job_id = fleet.submit(submitted)
    status = fleet.wait(job_id, CLI_TIMEOUT)
    assert (status["state"], status["done"], status["waiting_on_budget"]) == (
        "done", len(submitted), 0)
    decided_as_the_farm_says(fleet.results(job_id), submitted)
    sessions = fleet.farm.sessions()
    assert len(sessions["peak_by_host"]) == HOSTS
    assert max(sessions["peak_by_host"].values()) <= DEFAULTS.mx_concurrency, \
        "per host, fleet-wide"
    each_hosts_budget_held(fleet)


def test_a_domains_budget_holds_across_the_fleet(
        redis_url: str, tmp_path: Path, fleets: list[Fleet]) -> None:
    """200 addresses of one domain are 20 sessions; two workers share its budget of 10 at
    once, then two a second, counted where the sessions arrive. The budgets of its MX
    address, network and provider are opened, so the spacing is the domain's own."""
    rate, burst = 120.0, 10
    limits = f"domain_per_minute = {rate}\ndomain_burst = {burst}\n" + "".join(
        f"{unit}_per_minute = 1000000\n{unit}_burst = 100000\n"
        for unit in ("ip", "network", "provider"))
    fleet = Fleet(tmp_path, redis_url, domains=1, hosts=1, limits=limits)
    fleets.append(fleet)
    fleet.start(2)
    submitted = addresses(1, 200)
    status = fleet.wait(fleet.submit(submitted), CLI_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    [starts] = fleet.farm.sessions()["started_by_domain"].values()
    assert len(starts) == 20
    spaced_by_budget(starts, burst, rate)
