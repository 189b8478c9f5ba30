"""Budgets are a schedule, not a verdict: 2,000 addresses over 500 domains that share 4
slow MX hosts, with the default budgets, through `cbv verify --file` and through a job of
two workers: every address decided, none `rate_limited`; the per-host cap and a domain's
budget held fleet-wide, counted at the farm."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.job_fleet import Fleet, addresses, expected_result

pytestmark = [pytest.mark.peers, pytest.mark.slow]
DOMAINS, PER_DOMAIN, HOSTS = 500, 4, 4
FARM_DELAY = 0.04  # seconds before each reply: a session takes about a quarter second
MX_CONCURRENCY = 5  # the default
CLI_TIMEOUT = 240.0


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    started: list[Fleet] = []
    yield started
    for fleet in started:
        fleet.stop()


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
    assert fleet.farm.stats()["peak_open"] <= HOSTS * MX_CONCURRENCY


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
    assert max(sessions["peak_by_host"].values()) <= MX_CONCURRENCY, "per host, fleet-wide"
    assert sum(map(len, sessions["started_by_domain"].values())) == DOMAINS, \
        "each domain's addresses share one session"


def test_a_domains_budget_holds_across_the_fleet(
        redis_url: str, tmp_path: Path, fleets: list[Fleet]) -> None:
    """200 addresses of one domain are 20 sessions; two workers share its budget of 10 at
    once, then one every half second, counted where the sessions arrive."""
    rate, burst = 120.0, 10
    limits = f"domain_per_minute = {rate}\ndomain_burst = {burst}\n"
    fleet = Fleet(tmp_path, redis_url, domains=1, hosts=1, limits=limits)
    fleets.append(fleet)
    fleet.start(2)
    submitted = addresses(1, 200)
    status = fleet.wait(fleet.submit(submitted), CLI_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    [starts] = fleet.farm.sessions()["started_by_domain"].values()
    starts.sort()
    interval = 60.0 / rate
    assert len(starts) == 20
    for n, started in enumerate(starts[burst:], start=1):
        assert started - starts[0] >= n * interval - interval / 2, (n, starts)
