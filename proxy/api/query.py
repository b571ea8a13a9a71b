"""The Query API v2 front door: Neo4j's HTTP API, translated to the request path and back.

``POST /db/{database}/query/v2`` takes Neo4j's request body (``statement``, ``parameters``,
``includeCounters``, ``accessMode``, ``bookmarks``; unknown fields such as ``impersonatedUser``
are refused) in plain or typed JSON, and answers as Neo4j does: ``202`` with ``data.fields``,
``data.values``, ``counters`` when asked and ``bookmarks``. ``/query/v2/tx`` (explicit
transactions) is refused and recorded; ``GET /`` is the discovery document the neo4j driver
reads before it speaks HTTP.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from proxy.api.errors import REQUEST_ID_HEADER
from proxy.api.state import client_address, runtime, start_request
from proxy.errors import (
    BadRequest,
    NotSupported,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from proxy.gateway.call import SUCCESS_STATUS, Call, Statement
from proxy.statement import JSON, Summary
from proxy.values import TYPED_MEDIA_TYPE, InvalidValue, from_typed, to_plain, to_typed

# Set, to the number of rows returned, when the policy's row limit cut the result short.
TRUNCATED_HEADER = "X-CypherGate-Truncated"
_MEDIA_TYPES = {"application/json", TYPED_MEDIA_TYPE}

router = APIRouter()


class QueryBody(BaseModel):
    """The Query API v2 request body. Unknown fields (such as ``impersonatedUser``) are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statement: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    includeCounters: StrictBool = False  # the Query API's own field names
    accessMode: Literal["READ", "WRITE"] | None = None

    @field_validator("accessMode", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        # Neo4j accepts "Read" as well as "READ" (the neo4j driver sends "Read").
        return value.upper() if isinstance(value, str) else value

    bookmarks: list[str] = Field(default_factory=list)


@router.post("/db/{database}/query/v2")
async def query(database: str, request: Request) -> JSONResponse:
    """One statement through the request path; its rows, counters and bookmarks back."""
    state = runtime(request)
    request_id = start_request(request)
    body = _Body(request, state.max_body_bytes)
    async with state.gateway.run(_call(request, request_id, database, body)) as rows:
        fields = rows.fields
        values = [row async for row in rows]
        summary = await rows.summary()
    typed = _wants_typed(request.headers.get("accept"))
    headers = {REQUEST_ID_HEADER: request_id}
    if summary.truncated:
        headers[TRUNCATED_HEADER] = str(len(values))
    return JSONResponse(
        _render(fields, values, summary, include_counters=body.include_counters, typed=typed),
        status_code=SUCCESS_STATUS,
        headers=headers,
        media_type=TYPED_MEDIA_TYPE if typed else "application/json",
    )


@router.api_route("/db/{database}/query/v2/tx{rest:path}", methods=["GET", "POST", "PUT", "DELETE"])
async def explicit_transaction(database: str, rest: str, request: Request) -> JSONResponse:
    """Explicit transactions are not offered over HTTP yet: refused, and recorded."""
    del rest
    state = runtime(request)
    request_id = start_request(request)
    error = NotSupported(reason="explicit_transaction")
    body = _Body(request, state.max_body_bytes)
    await state.gateway.refuse(_call(request, request_id, database, body), error)
    raise error


@router.get("/")
async def discovery(request: Request) -> dict[str, str]:
    """What Neo4j's own root answers, so that the neo4j driver can use an http:// URI here.
    Like Neo4j's, it needs no credential; it reveals the Neo4j version and edition only."""
    server = await runtime(request).describe()
    base = str(request.base_url).rstrip("/")
    return {
        "neo4j_version": server["version"],
        "neo4j_edition": server["edition"],
        "query": f"{base}/db/{{databaseName}}/query/v2",
    }


class _Body:
    """The request's body, read and parsed only when the request path asks for its statement
    (after the caller is identified); remembers what the answer needs of it."""

    __slots__ = ("_limit", "_request", "include_counters")

    def __init__(self, request: Request, limit: int) -> None:
        self._request = request
        self._limit = limit
        self.include_counters = False

    async def statement(self) -> Statement:
        request = self._request
        typed = _media_type(request.headers.get("content-type")) == TYPED_MEDIA_TYPE
        body = _parse(await _read_body(request, self._limit), typed=typed)
        self.include_counters = body.includeCounters
        return Statement(
            text=body.statement,
            parameters=body.parameters,
            access_mode=body.accessMode,
            bookmarks=tuple(body.bookmarks),
        )


def _call(request: Request, request_id: str, database: str, body: _Body) -> Call:
    return Call(
        request_id=request_id,
        database=database,
        authorization=request.headers.get("authorization"),
        client=client_address(request),
        headers=request.headers,
        statement=body.statement,
    )


def _parse(raw: bytes, *, typed: bool) -> QueryBody:
    try:
        body = QueryBody.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"Invalid request body: {problems}", reason="invalid_body") from None
    if not typed:
        return body
    try:
        parameters = {k: from_typed(v, f"parameters.{k}") for k, v in body.parameters.items()}
    except InvalidValue as exc:
        raise BadRequest(f"Invalid request body: {exc}", reason="invalid_typed_value") from None
    return body.model_copy(update={"parameters": parameters})


def _render(
    fields: list[str],
    values: list[list[JSON]],
    summary: Summary,
    *,
    include_counters: bool,
    typed: bool,
) -> dict[str, Any]:
    encode = to_typed if typed else to_plain
    encoded = [[encode(value) for value in row] for row in values]
    body: dict[str, Any] = {"data": {"fields": fields, "values": encoded}}
    if include_counters:
        body["counters"] = dict(summary.counters)
    body["bookmarks"] = summary.bookmarks
    if summary.truncated:
        body["notifications"] = [
            {
                "code": "CypherGate.RowLimit.Truncated",
                "severity": "WARNING",
                "title": "Result truncated",
                "description": f"Only the first {len(encoded)} rows are returned: the policy's "
                "row limit for this DAG.",
            }
        ]
    return body


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
