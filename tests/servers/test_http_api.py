"""The HTTP listener inside a running daemon: verdicts one by one and in bulk, the cache,
health and Prometheus metrics, bearer tokens, limits and JSON errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from cbv.config import ConfigError, config_from_dict
from cbv.endpoint import parse_endpoint
from cbv.servers.daemon import Daemon
from cbv.testing import MXFarm
from tests.servers.clients import PolicyClient, running, sender_domains, server_config
from tests.world import World

TOKEN = "s3cret-t0ken-for-tests"


@pytest_asyncio.fixture
async def farm(world: World) -> MXFarm:
    return await sender_domains(world)


@pytest_asyncio.fixture
async def start(world: World, farm: MXFarm) -> AsyncIterator[Callable[..., Any]]:
    """`await start(http={...})`: a daemon with the HTTP listener and an httpx client."""
    contexts: list[Any] = []

    async def starting(**sections: dict[str, Any]) -> tuple[Daemon, httpx.AsyncClient]:
        server = {"policy": "127.0.0.1:0", "smtpcbd": "", "http": "127.0.0.1:0"}
        server.update(sections.pop("server", {}))
        context = running(server_config(world, farm, server=server, **sections))
        contexts.append(context)
        daemon = await context.__aenter__()
        address = daemon.addresses()["http"]
        if address.startswith("unix:"):
            transport = httpx.AsyncHTTPTransport(uds=address[5:])
            client = httpx.AsyncClient(transport=transport, base_url="http://cbv")
        else:
            client = httpx.AsyncClient(base_url=f"http://{address}")
        contexts.append(client)
        return daemon, client

    yield starting
    for context in reversed(contexts):
        await context.__aexit__(None, None, None)


async def test_verify_one_then_from_the_cache(start: Any) -> None:
    _, client = await start()
    first = await client.get("/v1/verify", params={"address": "nobody@fail.test"})
    assert first.status_code == 200, first.text
    verdict = first.json()
    assert (verdict["result"], verdict["reason"], verdict["cached"]) == (
        "fail", "mailbox_unknown", False)
    assert verdict["smtp_cbv_result"] == "error"
    again = (await client.get("/v1/verify", params={"address": "nobody@fail.test"})).json()
    assert again["cached"] is True
    bad = (await client.get("/v1/verify", params={"address": "no at sign"})).json()
    assert (bad["result"], bad["reason"]) == ("fail", "bad_syntax")
    traced = (await client.get("/v1/verify", params={"address": "alice@pass.test",
                                                      "transcript": "true"})).json()
    assert traced["result"] == "pass" and traced["transcript"]


async def test_bulk_streams_one_ndjson_line_per_address(start: Any) -> None:
    _, client = await start()
    addresses = ["alice@pass.test", "nobody@fail.test", "not an address", "alice@pass.test"]
    response = await client.post("/v1/verify", json={"addresses": addresses})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = [json.loads(line) for line in response.text.splitlines()]
    by_index = {line["index"]: line["verdict"] for line in lines}
    assert sorted(by_index) == [0, 1, 2, 3]
    assert [by_index[i]["result"] for i in range(4)] == ["pass", "fail", "fail", "pass"]
    assert by_index[2]["reason"] == "bad_syntax"


async def test_limits_and_errors_are_clear_json(start: Any) -> None:
    _, client = await start(http={"max_bulk": 2, "max_body_bytes": 1024})
    too_many = await client.post("/v1/verify", json={"addresses": ["a@pass.test"] * 3})
    assert too_many.status_code == 413
    assert too_many.json() == {"error": "request_entity_too_large", "message":
                               "3 addresses; at most 2 per request (http.max_bulk)"}
    big = await client.post("/v1/verify", json={"addresses": ["x" * 900, "y" * 900]})
    assert big.status_code == 413 and big.json()["message"] == "request body over 1024 bytes"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        yield b'{"addresses": ["'
        for _ in range(20):
            yield b"z" * 100
        yield b'"]}'

    streamed = await client.post("/v1/verify", content=chunks(),
                                 headers={"content-type": "application/json"})
    assert streamed.status_code == 413, streamed.text
    assert (await client.post("/v1/verify", content=b"{not json",
                              headers={"content-type": "application/json"})).status_code == 422
    missing = await client.get("/v1/verify")
    assert missing.status_code == 422
    assert missing.json() == {"error": "unprocessable_entity",
                              "message": "query.address: Field required"}
    long = await client.get("/v1/verify", params={"address": "a" * 2000 + "@pass.test"})
    assert long.status_code == 422 and long.json()["error"] == "unprocessable_entity"
    nowhere = await client.get("/v2/nothing")
    assert (nowhere.status_code, nowhere.json()["error"]) == (404, "not_found")
    wrong = await client.put("/v1/verify")
    assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")


async def test_cache_lookup_and_forgetting(start: Any) -> None:
    _, client = await start()
    assert (await client.get("/v1/cache/nobody@fail.test")).status_code == 404
    await client.get("/v1/verify", params={"address": "nobody@FAIL.test"})
    cached = await client.get("/v1/cache/nobody@fail.test")
    assert cached.status_code == 200
    assert (cached.json()["result"], cached.json()["cached"]) == ("fail", True)
    assert (await client.delete("/v1/cache/nobody@fail.test")).json() == {
        "address": "nobody@fail.test", "deleted": 1}
    assert (await client.delete("/v1/cache/nobody@fail.test")).json()["deleted"] == 0
    assert (await client.get("/v1/cache/nobody@fail.test")).status_code == 404
    bad = await client.get("/v1/cache/not%20an%20address")
    assert (bad.status_code, bad.json()["error"]) == (404, "not_found")
    assert bad.json()["message"].startswith("not an address (")
    assert (await client.delete("/v1/cache/not%20an%20address")).json() == {
        "address": "not an address", "deleted": 0}
    newline = await client.get("/v1/cache/%0A")  # reaches the handler empty
    assert (newline.status_code, newline.json()["error"]) == (404, "not_found")
    assert (await client.delete("/v1/cache/%0A")).json() == {"address": "", "deleted": 0}


async def test_health_and_metrics(start: Any) -> None:
    daemon, client = await start(limits={"domain_burst": 1, "domain_per_minute": 1.0,
                                         "max_wait": 0.0})
    health = (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["uptime_seconds"] >= 0
    policy = await PolicyClient.connect(daemon.addresses()["policy"])
    assert (await policy.ask("nobody@fail.test")).startswith("550")
    assert (await policy.ask("nobody@fail.test")).startswith("550")
    await policy.close()
    limited = (await client.get("/v1/verify", params={"address": "other@fail.test"})).json()
    assert limited["reason"] == "rate_limited"
    response = await client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in [
        'cbv_callouts_total{reason="mailbox_unknown",result="fail",stage="rcpt"} 1.0',
        'cbv_cache_lookups_total{backend="memory",outcome="hit"} 1.0',
        'cbv_cache_lookups_total{backend="memory",outcome="miss"} 2.0',
        'cbv_rate_limit_refusals_total{domain_class="default",limit="domain_budget"} 1.0',
        'cbv_requests_total{listener="policy"} 2.0',
        'cbv_decisions_total{action="reject",listener="policy",result="fail",would=""} 2.0',
        'cbv_decision_duration_seconds_count{listener="policy"} 2.0',
        'cbv_decision_duration_seconds_count{listener="http"} 1.0',
        "cbv_callout_duration_seconds_count 1.0",
        "cbv_callouts_in_flight 0.0",
        'cbv_egress_callouts_total{egress="direct",event="callout"} 1.0',
        'cbv_egress_state{cbv_egress_state="active",egress="direct"} 1.0',
    ]:
        assert line in text, line
    assert 'cbv_requests_total{listener="http"} 3.0' in text  # healthz, verify, this one
    status = (await client.get("/v1/status")).json()
    assert [d["address"] for d in status["recent"]] == [
        "other@fail.test", "nobody@fail.test", "nobody@fail.test"]
    assert status["pressure"][0]["domain"] == "fail.test"
    assert status["pressure"][0]["refusals"] == 1
    assert status["egresses"] == [{"name": "direct", "state": "active", "callouts": 1,
                                   "refusals": 0, "failures": 0, "unavailable": 0}]


async def test_dry_run_decisions_are_counted_and_shown_as_what_happened(start: Any) -> None:
    daemon, client = await start(policy={"dry_run": True})
    policy = await PolicyClient.connect(daemon.addresses()["policy"])
    assert (await policy.ask("nobody@fail.test")).startswith("WARN cbv dry run: would reject")
    await policy.close()
    text = (await client.get("/metrics")).text
    assert ('cbv_decisions_total{action="accept",listener="policy",result="fail",'
            'would="reject"} 1.0') in text
    assert 'action="reject"' not in text
    recent = (await client.get("/v1/status")).json()["recent"]
    assert [(d["address"], d["action"], d["would"]) for d in recent] == [
        ("nobody@fail.test", "accept", "reject")]


async def test_a_token_guards_all_but_the_page_health_and_schema(start: Any) -> None:
    _, client = await start(http={"token": TOKEN})
    for path in ("/v1/verify?address=alice@pass.test", "/metrics", "/v1/status",
                 "/v1/cache/alice@pass.test"):
        refused = await client.get(path)
        assert refused.status_code == 401, path
        assert refused.headers["www-authenticate"] == "Bearer"
        assert refused.json() == {"error": "unauthorized",
                                  "message": "a valid bearer token is required"}
        wrong = await client.get(path, headers={"Authorization": "Bearer not-the-token-at-all"})
        assert wrong.status_code == 401
    ok = await client.get("/v1/verify", params={"address": "alice@pass.test"},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    for path in ("/", "/healthz", "/openapi.json"):
        assert (await client.get(path)).status_code == 200, path
    schema = (await client.get("/openapi.json")).json()
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


async def test_on_a_unix_socket(start: Any, tmp_path: Path) -> None:
    socket_path = tmp_path / "http.sock"
    daemon, client = await start(server={"http": f"unix:{socket_path}"})
    assert daemon.addresses()["http"] == f"unix:{socket_path}"
    assert (await client.get("/healthz")).json()["status"] == "ok"


def test_beyond_loopback_only_with_a_token(world: World) -> None:
    exposed = {"server": {"http": "0.0.0.0:8025"}}
    with pytest.raises(ConfigError) as refused:
        config_from_dict(exposed, "cbv.toml")
    assert str(refused.value) == ("cbv.toml: http.token: required when server.http listens "
                                  "beyond loopback (0.0.0.0:8025)")
    assert config_from_dict({**exposed, "http": {"token": TOKEN}}).http.token == TOKEN
    with pytest.raises(ConfigError, match=r"http\.token: the token must be at least 16"):
        config_from_dict({"http": {"token": "short"}})
    assert [parse_endpoint(text).is_loopback for text in (
        "127.0.0.2:1", "[::1]:1", "localhost:1", "unix:/run/cbv/http.sock", "0.0.0.0:1",
        "192.0.2.1:1", "mail.example:1")] == [True, True, True, True, False, False, False]


async def test_shutdown_lets_a_bulk_answer_in_flight_finish(world: World, farm: MXFarm) -> None:
    server = {"policy": "", "smtpcbd": "", "http": "127.0.0.1:0"}
    daemon = Daemon(server_config(world, farm, server=server), announce=lambda line: None)
    await daemon.start()
    async with httpx.AsyncClient(base_url=f"http://{daemon.addresses()['http']}") as client:
        addresses = [f"user{n}@slow.test" for n in range(3)]  # each RCPT answered in 0.4 s
        async with client.stream("POST", "/v1/verify", json={"addresses": addresses}) as bulk:
            assert bulk.status_code == 200
            stopping = asyncio.create_task(daemon.shutdown())
            lines = [json.loads(line) async for line in bulk.aiter_lines()]
        await stopping
    assert sorted(line["index"] for line in lines) == [0, 1, 2]
    assert {line["verdict"]["reason"] for line in lines} == {"mailbox_unknown"}
    async with httpx.AsyncClient() as late:
        with pytest.raises(httpx.ConnectError):
            await late.get(f"http://{daemon.addresses()['http']}/healthz")
