"""The HTTP API's bulk jobs (docs/jobs.md): submit a list, watch it, collect its results
in input order, cancel it. Answered by every `cbv serve` with `[jobs] enabled = true`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, params
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError
from starlette.exceptions import HTTPException

from cbv.jobs.inputs import MAX_ADDRESS, InputError, read_submission
from cbv.jobs.model import JobStatus
from cbv.jobs.queue import QueueError
from cbv.jobs.service import WEBHOOK, JobOptions, JobService, WebhookRefused
from cbv.servers.runtime import Runtime

JobId = Annotated[str, Path(min_length=1, max_length=64, description="the id POST gave")]
SUBMISSION = {
    "required": True,
    "description": "a JSON list of addresses; or, with their content type, "
                   "application/x-ndjson (a JSON string or {\"email\": ...} per line) or "
                   "text/csv (with an `email` column)",
    "content": {"application/json": {"schema": {
        "type": "array", "minItems": 1,
        "items": {"type": "string", "minLength": 1, "maxLength": MAX_ADDRESS}}}},
}
Delay = Annotated[float, Field(gt=0, le=86_400)]


class Submitted(BaseModel):
    id: str = Field(description="the job's id, for /v1/jobs/{id}")


class JobList(BaseModel):
    jobs: list[JobStatus] = Field(description="the newest jobs still kept, newest first")


def _unavailable() -> HTTPException:
    return HTTPException(503, "bulk jobs are off on this cbv ([jobs] enabled = false)")


def jobs_router(runtime: Runtime, protected: Sequence[params.Depends]) -> APIRouter:
    router = APIRouter(dependencies=list(protected))

    def service() -> JobService:
        if runtime.jobs is None:
            raise _unavailable()
        return runtime.jobs

    async def known(job_id: str) -> JobStatus:
        try:
            status = await service().status(job_id)
        except QueueError as exc:
            raise HTTPException(503, str(exc)) from None
        if status is None:
            raise HTTPException(404, f"no job {job_id} (never submitted, or expired)")
        return status

    @router.post("/v1/jobs", status_code=201, response_model=Submitted,
                 summary="Submit a list to verify as a job",
                 responses={403: {"description": "the webhook is not in [jobs] webhook_allow"}},
                 openapi_extra={"requestBody": SUBMISSION})
    async def submit(
        request: Request,
        name: Annotated[str, Query(max_length=200)] = "",
        webhook: Annotated[str | None, Query(max_length=2048, pattern=WEBHOOK, description=(
            "an http(s) URL POSTed the job's status once it is done"))] = None,
        retry_delays: Annotated[list[Delay] | None, Query(max_length=20, description=(
            "seconds before each new attempt at a transient address"))] = None,
        retry_horizon: Annotated[float | None, Query(gt=0, le=30 * 86_400)] = None,
    ) -> JSONResponse:
        jobs = service()
        try:
            options = JobOptions.model_validate({
                "name": name, "webhook": webhook, "retry_delays": retry_delays,
                "retry_horizon": retry_horizon})
            addresses = read_submission(await request.body(),
                                        request.headers.get("content-type", ""))
            spec = await jobs.submit(addresses, options)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise HTTPException(422, f"{where}: {first['msg']}") from None
        except WebhookRefused as exc:
            raise HTTPException(403, str(exc)) from None
        except (InputError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from None
        except QueueError as exc:
            raise HTTPException(503, str(exc)) from None
        return JSONResponse({"id": spec.id}, 201, {"Location": f"/v1/jobs/{spec.id}"})

    @router.get("/v1/jobs", response_model=JobList, summary="The newest jobs")
    async def recent() -> JobList:
        try:
            return JobList(jobs=await service().recent())
        except QueueError as exc:
            raise HTTPException(503, str(exc)) from None

    @router.get("/v1/jobs/{job_id}", response_model=JobStatus, summary="A job's progress")
    async def status(job_id: JobId) -> JobStatus:
        return await known(job_id)

    @router.get("/v1/jobs/{job_id}/results", summary=(
        "The job's final verdicts so far, in input order: NDJSON, or CSV with Accept: text/csv"),
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {"schema": {"type": "string"}},
                                     "text/csv": {"schema": {"type": "string"}}},
                         "description": "one JobVerdict (a Verdict with `attempts`) a line"}})
    async def results(job_id: JobId, request: Request) -> StreamingResponse:
        status = await known(job_id)
        as_csv = "text/csv" in request.headers.get("accept", "")
        return StreamingResponse(service().results(job_id, status.total, as_csv),
                                 media_type="text/csv" if as_csv else "application/x-ndjson")

    @router.delete("/v1/jobs/{job_id}", response_model=JobStatus, summary="Cancel a job")
    async def cancel(job_id: JobId) -> JobStatus:
        try:
            state = await service().cancel(job_id)
        except QueueError as exc:
            raise HTTPException(503, str(exc)) from None
        if state is None:
            raise HTTPException(404, f"no job {job_id} (never submitted, or expired)")
        return await known(job_id)

    return router
