"""What `cbv serve` loads before any listener asks for more: structural, not timed (the memory
it saves is in docs/benchmarks.md)."""

from __future__ import annotations

from tests.cli.test_startup import among, imported_by

HTTP_ONLY = ("fastapi", "starlette", "uvicorn", "cbv.servers.web", "cbv.servers.http_api")
WEBHOOK_ONLY = ("httpx",)


def test_the_daemon_loads_the_http_stack_and_httpx_only_when_used() -> None:
    modules = imported_by("import cbv.cli.serve, cbv.servers.daemon")
    assert "cbv.servers.jobs" in modules, "the job worker is there, its webhook client is not"
    assert among(modules, (*HTTP_ONLY, *WEBHOOK_ONLY, "redis")) == []

