"""`cbv job submit | status | results | cancel` against a daemon on loopback."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.cli.test_verify_cli import run_cbv
from tests.jobs.test_jobs_api import HTTP, mail_world
from tests.servers.clients import running, server_config
from tests.world import World

TOKEN = "job-cli-test-token-0123"


@pytest.fixture
async def url(world: World, tmp_path: Path) -> AsyncIterator[str]:
    await mail_world(world)
    config = server_config(world, world.farms[-1], server=HTTP, http={"token": TOKEN}, jobs={
        "enabled": True, "queue": f"sqlite://{tmp_path}/jobs.sqlite3"})
    async with running(config) as daemon:
        yield f"http://{daemon.addresses()['http']}"


async def test_submit_wait_status_results(url: str, tmp_path: Path) -> None:
    listing = tmp_path / "list.csv"
    listing.write_text("name,email\nOne,u1@ok.test\nTwo,nobody@ok.test\n")
    api = ["--url", url, "--token", TOKEN]
    code, out, err = await run_cbv("job", "submit", str(listing), "--wait", "--name", "t", *api)
    assert code == 0, err
    job_id = out.strip()
    assert f"{job_id}  done  2/2 decided (pass 1, fail 1, transient 0, unknown 0)" in err
    code, out, err = await run_cbv("job", "status", job_id, "--json", *api)
    assert code == 0 and json.loads(out)["state"] == "done"
    code, out, err = await run_cbv("job", "results", job_id, *api)
    assert [json.loads(line)["address"] for line in out.splitlines()] == [
        "u1@ok.test", "nobody@ok.test"]
    code, out, err = await run_cbv("job", "results", job_id, "--output", "csv", *api)
    assert [row["result"] for row in csv.DictReader(io.StringIO(out))] == ["pass", "fail"]
    code, out, err = await run_cbv("job", "cancel", job_id, *api)
    assert code == 0 and f"{job_id}  done" in out


async def test_errors_are_one_line(url: str, tmp_path: Path) -> None:
    code, _, err = await run_cbv("job", "status", "0123", "--url", url, "--token", TOKEN)
    assert (code, err) == (2, "cbv: error: GET /v1/jobs/0123: 404: no job 0123 (never "
                              "submitted, or expired)\n")
    code, _, err = await run_cbv("job", "results", "0123", "--url", url, "--token", TOKEN)
    assert (code, err) == (2, "cbv: error: GET /v1/jobs/0123/results: 404: no job 0123 "
                              "(never submitted, or expired)\n")
    code, _, err = await run_cbv("job", "status", "0123", "--url", url, "--token", "wrong")
    assert code == 2 and err.startswith("cbv: error: GET /v1/jobs/0123: 401: ")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    code, _, err = await run_cbv("job", "submit", str(empty), "--url", url)
    assert (code, err) == (2, f"cbv: error: {empty}: no addresses\n")
    code, _, err = await run_cbv("job", "status", "x", "--url", "http://127.0.0.1:9")
    assert code == 2 and err.startswith("cbv: error: cannot reach cbv at http://127.0.0.1:9")
    assert err.count("\n") == 1
