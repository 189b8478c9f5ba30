"""The status page's job section in headless Chromium: each job with a progress bar."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from cbv.engine.polling import poll_until
from tests.jobs.test_jobs_api import HTTP, mail_world
from tests.servers.clients import running, server_config
from tests.servers.test_status_page import browse, chromium, rows
from tests.world import World

TOKEN = "status-page-token-0123"
WAIT = 30.0


async def test_jobs_show_with_their_progress(world: World, tmp_path: Path) -> None:
    browser = chromium()
    await mail_world(world)
    config = server_config(world, world.farms[-1], server=HTTP, http={"token": TOKEN}, jobs={
        "enabled": True, "queue": f"sqlite://{tmp_path}/jobs.sqlite3", "retry_delays": [600]})
    async with running(config) as daemon:
        base = f"http://{daemon.addresses()['http']}"
        async with httpx.AsyncClient(base_url=base, timeout=WAIT,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as api:
            answer = await api.post("/v1/jobs", json=["u1@ok.test", "stuck@grey.test",
                                                      "nobody@ok.test"],
                                    params={"name": "march list"})
            job_id = answer.json()["id"]
            await poll_until(lambda: api.get(f"/v1/jobs/{job_id}"),
                             lambda answer: answer.json()["done"] >= 2, WAIT)
        dom = await browse(browser, tmp_path / "profile", f"{base}/#token={TOKEN}",
                           "--dump-dom")
    assert re.search(r'<body data-updates="[1-9]', dom), dom[:3000]
    assert '<section id="jobs" style="margin-top:1em">' in dom, "shown when jobs are on"
    [row] = rows(dom, "jobs")
    assert job_id in row and "march list" in row and "running" in row and "2 / 3" in row
    assert f'<progress max="3" value="2" data-job="{job_id}">' in row, row


async def test_without_jobs_the_section_stays_hidden(world: World, tmp_path: Path) -> None:
    browser = chromium()
    await mail_world(world)
    config = server_config(world, world.farms[-1], server=HTTP)
    async with running(config) as daemon:
        dom = await browse(browser, tmp_path / "profile",
                           f"http://{daemon.addresses()['http']}/", "--dump-dom")
    assert re.search(r'<body data-updates="[1-9]', dom), dom[:3000]
    assert '<section id="jobs" style="margin-top:1em" hidden="">' in dom
