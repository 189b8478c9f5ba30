"""Jobs through the HTTP API of a daemon on loopback, the SQLite queue, scripted MX hosts:
submit in each format, watch, collect in input order, retries, cancel, refusals."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cbv.engine.polling import poll_until
from cbv.servers.daemon import Daemon
from cbv.testing import MXScript, Reply, start_farm
from tests.servers.clients import running, server_config
from tests.waiting import until
from tests.world import World

WAIT = 30.0
HTTP = {"policy": "", "smtpcbd": "", "http": "127.0.0.1:0"}


HOSTS = {
    "ok.test": ("127.0.0.2", MXScript(rcpt=[("u*@ok.test", Reply(250, "2.1.5 Ok"))])),
    "grey.test": ("127.0.0.3", MXScript(catch_all=True, greylist_attempts=2, rcpt=[
        ("stuck@grey.test", Reply(451, "4.3.0 try later"))])),
}


async def mail_world(world: World) -> World:
    """Both domains' hosts on one port, as cbv dials every MX on one port."""
    world.farms.append(await start_farm({ip: script for ip, script in HOSTS.values()}))
    for domain, (ip, _) in HOSTS.items():
        world.dns.add_mx(domain, [(10, f"mx.{domain}")])
        world.dns.add_a(f"mx.{domain}", ip)
    return world


@pytest.fixture
async def api(world: World, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    await mail_world(world)
    config = server_config(world, world.farms[-1], server=HTTP, jobs={
        "enabled": True, "queue": f"sqlite://{tmp_path}/jobs.sqlite3",
        "retry_delays": [0.2], "retry_horizon": 3.0, "webhook_allow": ["http://127.0.0.1/"]})
    async with running(config) as daemon, httpx.AsyncClient(
            base_url=f"http://{daemon.addresses()['http']}", timeout=WAIT) as client:
        yield client


async def finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    """Polling the API, as a client does."""

    async def status() -> dict[str, Any]:
        found: dict[str, Any] = (await client.get(f"/v1/jobs/{job_id}")).json()
        return found

    found = await poll_until(status, lambda s: s["state"] in ("done", "cancelled"), WAIT)
    assert found["state"] in ("done", "cancelled"), f"not finished within {WAIT} s: {found}"
    return found


async def test_a_json_list_is_verified_and_read_back_in_input_order(
        api: httpx.AsyncClient) -> None:
    addresses = ["u1@ok.test", "nobody@ok.test", "not an address", "u2@ok.test",
                 "u1@ok.test"]
    answer = await api.post("/v1/jobs", json=addresses, params={"name": "first"})
    assert answer.status_code == 201
    job_id = answer.json()["id"]
    assert answer.headers["location"] == f"/v1/jobs/{job_id}"
    status = await finished(api, job_id)
    assert (status["name"], status["total"], status["done"]) == ("first", 5, 5)
    assert status["counts"] == {"pass": 3, "fail": 2, "transient": 0, "unknown": 0}
    lines = [json.loads(line) for line in
             (await api.get(f"/v1/jobs/{job_id}/results")).text.splitlines()]
    assert [line["address"] for line in lines] == [
        "u1@ok.test", "nobody@ok.test", "not an address", "u2@ok.test", "u1@ok.test"]
    assert [line["result"] for line in lines] == ["pass", "fail", "fail", "pass", "pass"]
    assert all(line["attempts"] == 1 for line in lines)
    as_csv = await api.get(f"/v1/jobs/{job_id}/results", headers={"Accept": "text/csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [(row["address"], row["attempts"]) for row in rows][:2] == [
        ("u1@ok.test", "1"), ("nobody@ok.test", "1")]
    listed = (await api.get("/v1/jobs")).json()["jobs"]
    assert [job["id"] for job in listed] == [job_id]


async def test_ndjson_and_csv_bodies(api: httpx.AsyncClient) -> None:
    ndjson = b'"u1@ok.test"\n{"email": "u3@ok.test"}\n\n'
    first = await api.post("/v1/jobs", content=ndjson,
                           headers={"Content-Type": "application/x-ndjson"})
    table = b"name;email\nAlice;u5@ok.test\nBob;nobody@ok.test\n"
    second = await api.post("/v1/jobs", content=table, headers={"Content-Type": "text/csv"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert (await finished(api, first.json()["id"]))["counts"]["pass"] == 2
    assert (await finished(api, second.json()["id"]))["counts"] == {
        "pass": 1, "fail": 1, "transient": 0, "unknown": 0}


async def test_greylisted_addresses_pass_on_retry_and_stuck_ones_end_transient(
        api: httpx.AsyncClient) -> None:
    answer = await api.post("/v1/jobs", json=["a@grey.test", "stuck@grey.test"])
    job_id = answer.json()["id"]
    status = await finished(api, job_id)
    assert status["counts"] == {"pass": 1, "fail": 0, "transient": 1, "unknown": 0}
    grey, stuck = [json.loads(line) for line in
                   (await api.get(f"/v1/jobs/{job_id}/results")).text.splitlines()]
    assert (grey["result"], grey["attempts"]) == ("pass", 2)
    assert (stuck["result"], stuck["reason"]) == ("transient", "tempfail")
    assert stuck["attempts"] > 2
    metrics = (await api.get("/metrics")).text
    assert 'cbv_job_verdicts_total{result="pass"} 1.0' in metrics
    assert 'cbv_job_verdicts_total{result="transient"} 1.0' in metrics
    retried = float(metrics.split('cbv_job_requeued_total{why="retry"} ')[1].split()[0])
    assert retried == grey["attempts"] - 1 + stuck["attempts"] - 1
    assert "cbv_job_items_in_hand 0.0" in metrics


async def test_a_cancelled_job_says_so(api: httpx.AsyncClient) -> None:
    job_id = (await api.post("/v1/jobs", json=["stuck@grey.test"],
                             params={"retry_delays": [60]})).json()["id"]
    answer = await api.delete(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200 and answer.json()["state"] == "cancelled"
    assert (await finished(api, job_id))["state"] == "cancelled"


@pytest.mark.parametrize(("body", "headers", "params", "message"), [
    (b"[1]", {"Content-Type": "application/json"}, {}, "item 0: expected an address"),
    (b"{}", {"Content-Type": "application/json"}, {}, "a JSON body must be a list"),
    (b"a@b.test", {"Content-Type": "text/plain"}, {}, "content type 'text/plain'"),
    (b"name\nx\n", {"Content-Type": "text/csv"}, {}, "CSV needs an 'email' column"),
    (b"[]", {"Content-Type": "application/json"}, {}, "no addresses in the body"),
    (b'["a@b.test"]', {"Content-Type": "application/json"}, {"webhook": "ftp://x"},
     "webhook"),
    (b'["a@b.test"]', {"Content-Type": "application/json"}, {"retry_delays": [-1]},
     "retry_delays"),
])
async def test_bad_submissions_get_one_clear_line(
        api: httpx.AsyncClient, body: bytes, headers: dict[str, str], params: dict[str, Any],
        message: str) -> None:
    answer = await api.post("/v1/jobs", content=body, headers=headers, params=params)
    assert answer.status_code == 422
    assert message in answer.json()["message"] and "\n" not in answer.json()["message"]


async def test_unknown_jobs_are_404(api: httpx.AsyncClient) -> None:
    for answer in [await api.get("/v1/jobs/0123"), await api.get("/v1/jobs/0123/results"),
                   await api.delete("/v1/jobs/0123")]:
        assert answer.status_code == 404
        assert answer.json()["message"] == "no job 0123 (never submitted, or expired)"


async def test_without_jobs_enabled_the_routes_say_so(world: World) -> None:
    await mail_world(world)
    config = server_config(world, world.farms[-1], server=HTTP)
    daemon: Daemon
    async with running(config) as daemon, httpx.AsyncClient(
            base_url=f"http://{daemon.addresses()['http']}") as client:
        answer = await client.post("/v1/jobs", json=["a@ok.test"])
    assert answer.status_code == 503
    assert answer.json()["message"] == "bulk jobs are off on this cbv ([jobs] enabled = false)"


class Receiver:
    """A loopback HTTP endpoint that records each request and answers `status`."""

    def __init__(self, status: str, headers: str = "") -> None:
        self.status = status
        self.headers = headers
        self.bodies: list[bytes] = []
        self.connections = 0
        self.received = asyncio.Event()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        self.bodies.append(await reader.readexactly(length))
        writer.write(f"HTTP/1.1 {self.status}\r\n{self.headers}Content-Length: 0\r\n"
                     "Connection: close\r\n\r\n".encode())
        await writer.drain()
        writer.close()
        self.received.set()

    async def stop(self) -> None:
        self.server.close()
        await self.server.wait_closed()


@pytest.mark.parametrize("webhook", ["http://10.0.0.1/hook", "https://127.0.0.1/hook"])
async def test_a_webhook_the_operator_did_not_allow_is_forbidden(
        api: httpx.AsyncClient, webhook: str) -> None:
    answer = await api.post("/v1/jobs", json=["a@b.test"], params={"webhook": webhook})
    assert answer.status_code == 403
    message = answer.json()["message"]
    assert "list its URL prefix in [jobs] webhook_allow" in message and "\n" not in message
    assert (await api.get("/v1/jobs")).json()["jobs"] == [], "nothing was queued"


async def test_the_webhook_gets_the_final_status_once_and_no_redirect_is_followed(
        api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    elsewhere = Receiver("200 OK")
    target = await elsewhere.start()
    hook = Receiver("302 Found", f"Location: {target}/stolen\r\n")
    url = await hook.start()
    try:
        job_id = (await api.post("/v1/jobs", json=["u1@ok.test"],
                                 params={"webhook": f"{url}/done"})).json()["id"]
        await until(lambda: any("answered 302" in r.getMessage() for r in caplog.records),
                    "the worker read the webhook's answer", WAIT)
        [body] = hook.bodies
        told = json.loads(body)
        assert (told["id"], told["state"], told["done"]) == (job_id, "done", 1)
        assert elsewhere.connections == 0, "the redirect was not followed"
    finally:
        await hook.stop()
        await elsewhere.stop()
