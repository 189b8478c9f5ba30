"""The HTTP API (docs/http-api.md): verdicts, the cache, health, metrics and the status
page's data, as a FastAPI app served by the daemon's embedded uvicorn.

Every error is a JSON object `{"error": code, "message": text}`; a body over
`http.max_body_bytes` is refused with 413 before it is read; with `http.token` set, every
endpoint but `/`, `/healthz` and `/openapi.json` wants `Authorization: Bearer TOKEN`.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field, StringConstraints
from starlette.exceptions import HTTPException

from cbv import __version__
from cbv.address import AddressError, parse_address
from cbv.model import Verdict
from cbv.servers.jobs_api import jobs_router
from cbv.servers.logs import failure
from cbv.servers.runtime import Runtime
from cbv.servers.status_page import status_router

LOG = logging.getLogger("cbv.http")
MAX_ADDRESS = 1024  # far beyond any real address (RFC 5321: 254), to refuse junk early

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]
AddressText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ADDRESS)]
# In the path, "%0A" alone reaches the handler empty (the router's `$` matches before a
# last newline): refused like any other text that is no address, not as a bad request.
PathAddress = Annotated[str, StringConstraints(max_length=MAX_ADDRESS)]


class ErrorBody(BaseModel):
    error: str = Field(description="a short code: unauthorized, not_found, invalid_request, ...")
    message: str = Field(description="what went wrong, for a person")


class BulkRequest(BaseModel):
    addresses: list[AddressText] = Field(min_length=1, description="the addresses to verify")
    transcript: bool = Field(default=False, description="include each SMTP dialogue")


class BulkLine(BaseModel):
    """One line of the NDJSON answer to a bulk request, in the order verdicts come in."""

    index: int = Field(description="the address's position in the request")
    verdict: Verdict


class Purged(BaseModel):
    address: str
    deleted: int = Field(description="cached verdicts removed: 0 or 1")


class Health(BaseModel):
    status: str
    version: str
    uptime_seconds: float


class NdjsonResponse(StreamingResponse):
    media_type = "application/x-ndjson"


class MetricsResponse(Response):
    media_type = "text/plain"


class TooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over {limit} bytes")


def verdict_response(verdict: Verdict) -> Response:
    """The Verdict as JSON, serialised once by pydantic (the documented `response_model`
    is not validated again on the way out)."""
    return Response(verdict.model_dump_json(), media_type="application/json")


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None
                   ) -> JSONResponse:
    code = HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    return JSONResponse({"error": code, "message": message}, status,
                        dict(headers) if headers else None)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(part) for part in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


BEARER = HTTPBearer(auto_error=False, description="http.token from cbv's config")


class Authorized:
    """The dependency of every protected endpoint: the token of the current config."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    async def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None,
                                              Security(BEARER)]) -> None:
        token = self._runtime.generation.config.http.token
        if not token:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not hmac.compare_digest(given, token.encode()):
            raise HTTPException(401, "a valid bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})


def build_app(runtime: Runtime) -> FastAPI:
    """The API over `runtime`: each request uses the configuration current when it came."""
    app = FastAPI(
        title="cbv", version=__version__, docs_url=None, redoc_url=None,
        description="SMTP callback verification: verdicts, the verdict cache, metrics.",
        responses={"4XX": {"model": ErrorBody, "description": "a request cbv cannot answer"},
                   "5XX": {"model": ErrorBody, "description": "cbv failed"}},
    )
    protected = [Depends(Authorized(runtime))]

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        runtime.telemetry.failed("http", "internal_error")
        return error_response(500, "internal error; cbv logged it")

    @app.get("/v1/verify", response_model=Verdict, dependencies=protected,
             summary="Verify one address")
    async def verify(address: Annotated[AddressText, Query(description="the address")],
                     transcript: bool = False) -> Response:
        started = time.perf_counter()
        with runtime.generation as generation:
            verdict = await generation.verifier.verify(address, transcript=transcript)
        runtime.telemetry.looked_up("http", verdict, time.perf_counter() - started)
        return verdict_response(verdict)

    @app.post("/v1/verify", response_class=NdjsonResponse, dependencies=protected,
              summary="Verify many addresses; one NDJSON line per verdict as it comes in",
              responses={200: {"model": BulkLine, "description": "NDJSON: one BulkLine each"}})
    async def verify_many(request: BulkRequest) -> NdjsonResponse:
        limit = runtime.generation.config.http.max_bulk
        if len(request.addresses) > limit:
            raise HTTPException(413, f"{len(request.addresses)} addresses; at most {limit} "
                                "per request (http.max_bulk)")
        return NdjsonResponse(_stream(runtime, request))

    @app.get("/v1/cache/{address:path}", response_model=Verdict, dependencies=protected,
             summary="The cached verdict of an address, without calling out")
    async def cached(address: Annotated[PathAddress, Path()]) -> Response:
        try:
            parsed = parse_address(address)
        except AddressError as exc:
            raise HTTPException(404, f"not an address ({exc}), so never cached") from None
        record = await runtime.generation.verifier.cache.get(parsed)
        if record is None:
            raise HTTPException(404, f"no cached verdict for {parsed}")
        return verdict_response(record.verdict)

    @app.delete("/v1/cache/{address:path}", response_model=Purged, dependencies=protected,
                summary="Forget the cached verdict of an address")
    async def forget(address: Annotated[PathAddress, Path()]) -> Purged:
        try:
            parsed = parse_address(address)
        except AddressError:
            return Purged(address=address, deleted=0)  # never cached: nothing to forget
        deleted = await runtime.generation.verifier.cache.purge_address(parsed)
        return Purged(address=str(parsed), deleted=deleted)

    @app.get("/healthz", response_model=Health, summary="Liveness; needs no token")
    async def healthz() -> Health:
        uptime = time.time() - runtime.telemetry.started
        return Health(status="ok", version=__version__, uptime_seconds=round(uptime, 3))

    @app.get("/metrics", response_class=MetricsResponse, dependencies=protected,
             summary="Prometheus metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        cooling = await runtime.generation.verifier.cooldown.cooling()
        runtime.telemetry.cooling_hosts.set(len(cooling))
        return Response(runtime.telemetry.exposition(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(status_router(runtime, protected))
    app.include_router(jobs_router(runtime, protected))
    return app


async def _stream(runtime: Runtime, request: BulkRequest) -> AsyncIterator[bytes]:
    with runtime.generation as generation:
        started = time.perf_counter()
        async for index, verdict in generation.verifier.iter_verify(
                request.addresses, transcript=request.transcript):
            runtime.telemetry.looked_up("http", verdict, time.perf_counter() - started)
            yield BulkLine(index=index, verdict=verdict).model_dump_json().encode() + b"\n"


def guarded(app: Asgi, runtime: Runtime) -> Asgi:
    """The app behind two guards: bodies over `http.max_body_bytes` are refused, and an
    exception is logged once instead of reaching uvicorn (which would print it)."""

    async def guard(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        runtime.telemetry.answered("http", None, 0.0)
        limit = runtime.generation.config.http.max_body_bytes
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error_response(413, f"request body over {limit} bytes")(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise TooLarge(limit)
            return message

        try:
            await app(scope, limited, send)
        except Exception as exc:  # answered 500 by the app's handler already
            failure(LOG, "HTTP request failed", exc, path=scope.get("path", ""))

    return guard
