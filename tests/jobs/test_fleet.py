"""Real `cbv serve` workers, a real redis-server or one SQLite file, the bench's MX farm:
every address of a job gets exactly one final verdict through kill -9 and restarts.

What a killed worker held, its addresses' locks and its slots at the MX hosts, comes free
when its lease ends: callout `total_timeout` + 2 x `max_wait` + 5 s, 45 s at the defaults,
which the others wait out after each kill. The Redis fleets run with 10 s and 2 s (a lease
of 19 s), still far longer than a session with the farm takes. Each host's budget (3 at
once, then one a second) paces its domains: 10 to 20 a host, so each job runs long enough
to be killed in the middle, not longer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.job_fleet import Fleet, addresses, expected_result
from tests.peers.redis_server import RedisProcess

pytestmark = [pytest.mark.peers, pytest.mark.slow]
JOB_TIMEOUT = 150.0
FAST_RECLAIM = "lease = 2.0\nretry_delays = [1.0]\nretry_horizon = 600.0\n"
SHORT_CALLOUT = "total_timeout = 10.0\n"
SHORT_WAIT = "max_wait = 2.0\n"


@pytest.fixture
def fleets() -> Iterator[list[Fleet]]:
    started: list[Fleet] = []
    yield started
    for fleet in started:
        fleet.stop()


def assert_exactly_once(results: list[dict[str, Any]], submitted: list[str]) -> None:
    assert len(results) == len(submitted)
    assert [line["address"] for line in results] == submitted, "one line per input, in order"
    assert Counter(line["result"] for line in results) == Counter(
        expected_result(address) for address in submitted)
    assert {line["attempts"] for line in results} == {1}


def test_three_workers_one_killed_mid_job_every_address_decided_once(
        redis_url: str, tmp_path: Path, fleets: list[Fleet]) -> None:
    fleet = Fleet(tmp_path, redis_url, domains=2000, hosts=100, jobs=FAST_RECLAIM,
                  callout=SHORT_CALLOUT, limits=SHORT_WAIT, farm_delay=0.002)
    fleets.append(fleet)
    fleet.start(3)
    submitted = addresses(2000, 10)
    job_id = fleet.submit(submitted, name="twenty thousand")
    assert fleet.wait(job_id, JOB_TIMEOUT, done_at_least=len(submitted) // 4)["state"] == "running"
    fleet.kill(fleet.workers[0])
    status = fleet.wait(job_id, JOB_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    assert_exactly_once(fleet.results(job_id), submitted)


def test_every_worker_killed_and_restarted_mid_job_resumes_it(
        redis_url: str, tmp_path: Path, fleets: list[Fleet]) -> None:
    fleet = Fleet(tmp_path, redis_url, domains=300, hosts=20, jobs=FAST_RECLAIM,
                  callout=SHORT_CALLOUT, limits=SHORT_WAIT, farm_delay=0.005)
    fleets.append(fleet)
    fleet.start(3)
    submitted = addresses(300, 10)
    job_id = fleet.submit(submitted)
    assert fleet.wait(job_id, JOB_TIMEOUT, done_at_least=len(submitted) // 4)["state"] == "running"
    for worker in list(fleet.workers):
        fleet.kill(worker)
    for _ in range(3):
        fleet.start_worker()
    status = fleet.wait(job_id, JOB_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    assert_exactly_once(fleet.results(job_id), submitted)


def test_the_sqlite_queue_resumes_after_kill_9(tmp_path: Path, fleets: list[Fleet]) -> None:
    fleet = Fleet(tmp_path, str(tmp_path / "jobs.sqlite3"), domains=500, hosts=50,
                  farm_delay=0.005)
    fleets.append(fleet)
    fleet.start(1)
    submitted = addresses(500, 10)
    job_id = fleet.submit(submitted)
    assert fleet.wait(job_id, JOB_TIMEOUT, done_at_least=len(submitted) // 4)["state"] == "running"
    fleet.kill(fleet.workers[0])
    fleet.start_worker()
    status = fleet.wait(job_id, JOB_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    assert_exactly_once(fleet.results(job_id), submitted)


@pytest.fixture
def durable_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path / "redis", durable=True)
    server.start()
    yield server
    server.stop()


def test_workers_and_a_durable_redis_all_killed_mid_job_resume_it(
        durable_redis: RedisProcess, tmp_path: Path, fleets: list[Fleet]) -> None:
    """With Redis's append-only file on, even the queue's server may crash: what it had
    acknowledged is there again, and the settlements lost with it are made again, once."""
    fleet = Fleet(tmp_path, durable_redis.url, domains=200, hosts=20, jobs=FAST_RECLAIM,
                  callout=SHORT_CALLOUT, limits=SHORT_WAIT, farm_delay=0.005)
    fleets.append(fleet)
    fleet.start(2)
    submitted = addresses(200, 10)
    job_id = fleet.submit(submitted)
    half = fleet.wait(job_id, JOB_TIMEOUT, done_at_least=len(submitted) // 4)
    assert half["state"] == "running"
    for worker in list(fleet.workers):
        fleet.kill(worker)
    durable_redis.kill()
    durable_redis.start()
    for _ in range(2):
        fleet.start_worker()
    status = fleet.wait(job_id, JOB_TIMEOUT)
    assert (status["state"], status["done"]) == ("done", len(submitted))
    assert_exactly_once(fleet.results(job_id), submitted)
