"""Routes: the Query API v2 endpoint, health and readiness, and the single error handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from proxy.errors import CypherGateError, PayloadTooLarge, UnsupportedMediaType
from proxy.gateway import SUCCESS_STATUS, Answer, Call, Gateway, new_request_id

REQUEST_ID_HEADER = "X-CypherGate-Request-ID"
ReadinessCheck = Callable[[], Awaitable[None]]


def build_router(*, max_body_bytes: int) -> APIRouter:
    """The gateway's routes; the lifespan puts the :class:`Gateway` and readiness checks on
    ``app.state``."""
    router = APIRouter()

    @router.post("/db/{database}/query/v2")
    async def query(database: str, request: Request) -> JSONResponse:
        request_id = new_request_id()
        request.state.request_id = request_id
        client = f"{request.client.host}:{request.client.port}" if request.client else None
        call = Call(
            request_id=request_id,
            database=database,
            authorization=request.headers.get("authorization"),
            client=client,
            headers=request.headers,
            read_body=lambda: _read_body(request, max_body_bytes),
        )
        gateway: Gateway = request.app.state.gateway
        answer = await gateway.query(call)
        return JSONResponse(
            _render(answer), status_code=SUCCESS_STATUS, headers={REQUEST_ID_HEADER: request_id}
        )

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        readiness: dict[str, ReadinessCheck] = request.app.state.readiness
        checks: dict[str, str] = {}
        for name, check in readiness.items():
            try:
                await check()
                checks[name] = "ok"
            except Exception:
                checks[name] = "unavailable"
        ready = all(state == "ok" for state in checks.values())
        return JSONResponse(
            {"status": "ready" if ready else "not ready", "checks": checks},
            status_code=200 if ready else 503,
        )

    return router


def error_response(request: Request, error: CypherGateError) -> JSONResponse:
    """The one place errors become responses, in Neo4j's error format."""
    headers: dict[str, str] = {}
    request_id = getattr(request.state, "request_id", None)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    if error.status == 401:
        schemes = getattr(request.app.state, "auth_schemes", None) or ["Bearer"]
        headers["WWW-Authenticate"] = ", ".join(f'{s} realm="cyphergate"' for s in schemes)
    body = {"errors": [{"code": error.code, "message": error.message}]}
    return JSONResponse(body, status_code=error.status, headers=headers)


def _render(answer: Answer) -> dict[str, Any]:
    result = answer.result
    body: dict[str, Any] = {"data": {"fields": result.fields, "values": result.values}}
    if answer.include_counters:
        body["counters"] = result.counters
    body["bookmarks"] = result.bookmarks
    return body


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all."""
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(reason="content_type")
    accept = request.headers.get("accept", "")
    if accept and not any(
        kind.split(";")[0].strip() in {"application/json", "application/*", "*/*"}
        for kind in accept.split(",")
    ):
        raise UnsupportedMediaType(reason="accept")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(reason="body_too_large")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(reason="body_too_large")
        chunks.append(chunk)
    return b"".join(chunks)
