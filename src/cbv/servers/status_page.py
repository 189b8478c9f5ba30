"""The status page: `GET /` is one static HTML file (its own JS draws the charts in SVG;
nothing is fetched from anywhere but cbv), which polls `GET /v1/status` for the data."""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, params
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from cbv.servers.runtime import Runtime


class Point(BaseModel):
    t: float = Field(description="start of the step, epoch seconds")
    results: dict[str, int] = Field(description="decisions and lookups by result")
    callouts: int
    latency_ms_avg: float | None
    latency_ms_max: float | None
    cache_hits: int
    cache_misses: int


class RecentDecision(BaseModel):
    at: float
    listener: str
    address: str
    result: str
    reason: str
    action: str = Field(description="what the mail server was told: accept, reject, defer, "
                        "quarantine; lookup for HTTP")
    would: str | None = Field(description="in a dry run, the action that was not taken "
                              "(reject, defer, quarantine); null otherwise")
    duration_ms: float


class DomainPressure(BaseModel):
    domain: str
    waits: int
    refusals: int
    last: float


class EgressStatus(BaseModel):
    name: str
    state: str = Field(description="active, resting, over_budget or failing")
    callouts: int
    refusals: int = Field(description="callouts refused as blocked or listed")
    failures: int = Field(description="connections the egress itself failed to open")
    unavailable: int = Field(description="callouts it could not take (resting, over budget)")


class CoolingHost(BaseModel):
    ip: str
    until: float = Field(description="epoch seconds; no callout to this address before")
    refusals: int = Field(description="refusals in a row (each doubles the cooldown)")
    said: str = Field(description="what the host answered when it refused the verifier")


class Status(BaseModel):
    now: float
    uptime_seconds: float
    step_seconds: float
    series: list[Point] = Field(description="oldest first, one point per step")
    recent: list[RecentDecision] = Field(description="newest first")
    pressure: list[DomainPressure] = Field(
        description="domains whose callouts waited for or were refused by a rate limit "
                    "in the last 10 minutes, most refused first")
    egresses: list[EgressStatus] = Field(description="each egress since the daemon started")
    cooling: list[CoolingHost] = Field(
        description="MX addresses that refused the verifier, soonest free first")


@cache
def page() -> str:
    return (files("cbv.servers") / "static" / "status.html").read_text(encoding="utf-8")


def status_router(runtime: Runtime, protected: Sequence[params.Depends]) -> APIRouter:
    router = APIRouter()

    @router.get("/", response_class=HTMLResponse, summary="The status page; needs no token "
                "(its data does: open it as /#token=TOKEN)")
    async def status_page() -> HTMLResponse:
        return HTMLResponse(page())

    @router.get("/v1/status", response_model=Status, dependencies=list(protected),
                summary="What the status page draws")
    async def status() -> dict[str, Any]:
        snapshot = runtime.telemetry.history.snapshot()
        snapshot["uptime_seconds"] = round(time.time() - runtime.telemetry.started, 3)
        cooling = await runtime.generation.verifier.cooldown.cooling()
        snapshot["cooling"] = [{"ip": host.ip, "until": host.until, "refusals": host.strikes,
                                "said": host.detail} for host in cooling]
        return snapshot

    return router
