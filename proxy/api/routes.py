"""Routes: the Query API v2 endpoint, health and readiness, and the single error handler."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from proxy.errors import CypherGateError, NotSupported, PayloadTooLarge, UnsupportedMediaType
from proxy.gateway import SUCCESS_STATUS, Answer, Call, Gateway, new_request_id
from proxy.metrics import CONTENT_TYPE, Metrics
from proxy.values import TYPED_MEDIA_TYPE, to_plain, to_typed

REQUEST_ID_HEADER = "X-CypherGate-Request-ID"
# Set, to the number of rows returned, when the policy's row limit cut the result short.
TRUNCATED_HEADER = "X-CypherGate-Truncated"
ReadinessCheck = Callable[[], Awaitable[None]]


def build_router(*, max_body_bytes: int, metrics: bool = True) -> APIRouter:
    """The gateway's routes; the lifespan puts the :class:`Gateway` and readiness checks on
    ``app.state``. ``metrics``: serve ``/metrics`` (see proxy.metrics)."""
    router = APIRouter()

    @router.post("/db/{database}/query/v2")
    async def query(database: str, request: Request) -> JSONResponse:
        request_id = new_request_id()
        request.state.request_id = request_id
        call = _call(request, request_id, database, max_body_bytes)
        gateway: Gateway = request.app.state.gateway
        answer = await gateway.query(call)
        typed = _wants_typed(request.headers.get("accept"))
        headers = {REQUEST_ID_HEADER: request_id}
        if answer.result.truncated:
            headers[TRUNCATED_HEADER] = str(len(answer.result.values))
        return JSONResponse(
            _render(answer, typed=typed),
            status_code=SUCCESS_STATUS,
            headers=headers,
            media_type=TYPED_MEDIA_TYPE if typed else "application/json",
        )

    @router.api_route(
        "/db/{database}/query/v2/tx{rest:path}", methods=["GET", "POST", "PUT", "DELETE"]
    )
    async def explicit_transaction(database: str, rest: str, request: Request) -> JSONResponse:
        del rest
        request_id = new_request_id()
        request.state.request_id = request_id
        gateway: Gateway = request.app.state.gateway
        error = NotSupported(reason="explicit_transaction")
        await gateway.refuse(_call(request, request_id, database, max_body_bytes), error)
        raise error

    @router.get("/")
    async def discovery(request: Request) -> dict[str, str]:
        # What Neo4j's own root answers, so that the neo4j driver can use an http:// URI here.
        # Like Neo4j's, it needs no credential; it reveals the Neo4j version and edition only.
        describe: Callable[[], Awaitable[dict[str, str]]] = request.app.state.describe
        server = await describe()
        base = str(request.base_url).rstrip("/")
        return {
            "neo4j_version": server["version"],
            "neo4j_edition": server["edition"],
            "query": f"{base}/db/{{databaseName}}/query/v2",
        }

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

    if metrics:

        @router.get("/metrics")
        async def prometheus_metrics(request: Request) -> Response:
            # Like /healthz, it needs no credential: it names no DAG, user or secret.
            metrics: Metrics = request.app.state.metrics
            return Response(metrics.render(), media_type=CONTENT_TYPE)

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


def _render(answer: Answer, *, typed: bool) -> dict[str, Any]:
    result = answer.result
    encode = to_typed if typed else to_plain
    values = [[encode(value) for value in row] for row in result.values]
    body: dict[str, Any] = {"data": {"fields": result.fields, "values": values}}
    if answer.include_counters:
        body["counters"] = result.counters
    body["bookmarks"] = result.bookmarks
    if result.truncated:
        body["notifications"] = [
            {
                "code": "CypherGate.RowLimit.Truncated",
                "severity": "WARNING",
                "title": "Result truncated",
                "description": f"Only the first {len(values)} rows are returned: the policy's "
                "row limit for this DAG.",
            }
        ]
    return body


_MEDIA_TYPES = {"application/json", TYPED_MEDIA_TYPE}


def _call(request: Request, request_id: str, database: str, max_body_bytes: int) -> Call:
    client = client_address(request)
    return Call(
        request_id=request_id,
        database=database,
        authorization=request.headers.get("authorization"),
        client=client,
        headers=request.headers,
        read_body=lambda: _read_body(request, max_body_bytes),
        typed_parameters=_media_type(request.headers.get("content-type")) == TYPED_MEDIA_TYPE,
    )


def _media_type(header: str | None) -> str:
    return (header or "").split(";")[0].strip().lower()


def _wants_typed(accept: str | None) -> bool:
    """Typed JSON when the client accepts it and does not also accept plain JSON first."""
    kinds = [_media_type(kind) for kind in (accept or "").split(",")]
    return TYPED_MEDIA_TYPE in kinds and (
        "application/json" not in kinds
        or kinds.index(TYPED_MEDIA_TYPE) < kinds.index("application/json")
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all."""
    if _media_type(request.headers.get("content-type")) not in _MEDIA_TYPES:
        raise UnsupportedMediaType(reason="content_type")
    accept = request.headers.get("accept", "")
    if accept and not any(
        _media_type(kind) in {*_MEDIA_TYPES, "application/*", "*/*"} for kind in accept.split(",")
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


def client_address(request: Request) -> str | None:
    """``host:port`` of the caller as the audit record names it (None if unknown)."""
    return f"{request.client.host}:{request.client.port}" if request.client else None
