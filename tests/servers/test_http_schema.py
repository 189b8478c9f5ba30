"""Schemathesis against a live daemon on loopback: every operation of /openapi.json, with
generated valid and invalid input, never answers 500 and always answers as documented
(status, content type, body schema). Bounded: a fixed number of examples per operation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from cbv.servers.daemon import Daemon
from cbv.testing import FakeDNS
from tests.servers.clients import sender_domains, server_config
from tests.world import World

T = TypeVar("T")
EXAMPLES = 40  # per operation; the whole run takes a few seconds
TOKEN = "schema-test-token-0123"


class BackgroundLoop:
    """The daemon's event loop in a thread, so that schemathesis's blocking client can
    talk to it from the test."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(60)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def api(fake_dns: FakeDNS, tmp_path: Path) -> Iterator[str]:
    """The base URL of a daemon with the HTTP listener and a token, as the schema says."""
    world = World(fake_dns)
    background = BackgroundLoop()
    farm = background.run(sender_domains(world))
    server = {"policy": "", "smtpcbd": "", "http": "127.0.0.1:0"}
    jobs = {"enabled": True, "queue": f"sqlite://{tmp_path}/jobs.sqlite3"}
    config = server_config(world, farm, server=server, http={"token": TOKEN}, jobs=jobs)
    daemon = Daemon(config, announce=lambda line: None)
    background.run(daemon.start())
    try:
        yield f"http://{daemon.addresses()['http']}"
    finally:
        background.run(daemon.shutdown())
        background.run(farm.stop())
        background.stop()


def test_every_operation_answers_as_documented(api: str) -> None:
    schema = schemathesis.openapi.from_url(f"{api}/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        operations.append(result.ok())
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /", "GET /healthz", "GET /metrics", "GET /v1/status", "GET /v1/verify",
        "POST /v1/verify", "GET /v1/cache/{address}", "DELETE /v1/cache/{address}",
        "POST /v1/jobs", "GET /v1/jobs", "GET /v1/jobs/{job_id}", "GET /v1/jobs/{job_id}/results",
        "DELETE /v1/jobs/{job_id}"}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)

        answers_as_documented()
