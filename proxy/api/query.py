"""The Query API v2 front door: Neo4j's HTTP API, translated to the request path and back.

``POST /db/{database}/query/v2`` takes Neo4j's request body (``statement``, ``parameters``,
``includeCounters``, ``accessMode``, ``bookmarks``; unknown fields, and an ``impersonatedUser``
that is not null, are refused) in plain or typed JSON, and answers as Neo4j does: ``202`` with
``data.fields``, ``data.values``, ``counters`` when asked and ``bookmarks``; with
``X-CypherGate-Lineage: true``,
also ``lineage``: what the statement touched (:class:`proxy.lineage.Lineage`'s document), a
field Query API clients ignore. ``GET /`` is the discovery document
the neo4j driver reads before it speaks HTTP. The explicit transactions of ``/query/v2/tx`` are
in :mod:`proxy.api.transactions`, with the bodies and answers of this module.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from starlette.requests import ClientDisconnect
from starlette.routing import Route

from proxy.api.errors import REQUEST_ID_HEADER
from proxy.api.media import media_type, query_plan, wants_typed, without_utf8_bom
from proxy.api.state import client_address, combined, runtime, start_request
from proxy.api.traced import request_trace
from proxy.codec.values import UnsupportedValue
from proxy.errors import (
    AnswerNotWritable,
    BadRequest,
    ClientDisconnected,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from proxy.gateway.call import SUCCESS_STATUS, Call, Statement, database_name
from proxy.lineage import Lineage
from proxy.settings import ServerSettings
from proxy.statement import RowStream, Summary
from proxy.values import TYPED_MEDIA_TYPE, InvalidValue, from_typed, to_plain, to_typed

# Set, to the number of rows returned, when the policy's row limit cut the result short.
TRUNCATED_HEADER = "X-CypherGate-Truncated"
# "true": the answer carries what the statement touched ("false" or none: it does not).
LINEAGE_HEADER = "X-CypherGate-Lineage"
_MEDIA_TYPES = {"application/json", TYPED_MEDIA_TYPE}
# A charset parameter other than UTF-8's: the body would be read as what it is not.
_CHARSET = re.compile(r";\s*charset\s*=\s*(?!\"?utf-?8\"?\s*(?:;|$))", re.IGNORECASE)

router = APIRouter()


class QueryBody(BaseModel):
    """The Query API v2 request body. Unknown fields are refused, and so is an
    ``impersonatedUser`` (the gateway never impersonates) unless null, which Neo4j reads, like
    null for any other optional field, as the field left out (clients that write every field
    of their request type send them so)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    statement: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)
    includeCounters: StrictBool = False  # the Query API's own field names
    accessMode: Literal["READ", "WRITE"] | None = None
    impersonatedUser: None = None

    @field_validator("accessMode", mode="before")
    @classmethod
    def _any_case(cls, value: object) -> object:
        # Neo4j accepts "Read" as well as "READ" (the neo4j driver sends "Read").
        return value.upper() if isinstance(value, str) else value

    bookmarks: list[str] = Field(default_factory=list)

    @field_validator("parameters", "includeCounters", "bookmarks", mode="before")
    @classmethod
    def _null_is_left_out(cls, value: object, info: ValidationInfo) -> object:
        if value is not None:
            return value
        # The field's own default, as if left out.
        return cls.model_fields[str(info.field_name)].get_default(call_default_factory=True)

    @field_validator("impersonatedUser", mode="before")
    @classmethod
    def _no_impersonation(cls, value: object) -> object:
        if value is not None:
            raise ValueError("not supported: statements run as the DAG's own Neo4j user")
        return value


class TransactionBody(QueryBody):
    """A request body of ``/query/v2/tx``: as :class:`QueryBody`, but the statement is optional
    (an empty body or statement opens, keeps alive or commits a transaction without one)."""

    statement: str = ""


async def query(request: Request) -> JSONResponse:
    """One statement through the request path; its rows, counters and bookmarks back."""
    database: str = request.path_params["database"]
    # Starlette's router leaves the route it matched in the scope, FastAPI's included routers
    # do not: the request's span is named by its template (proxy.api.traced).
    request.scope["route"] = _ROUTE
    state = runtime(request)
    request_id = start_request(request)
    body = Body(request, state.server)
    call = call_of(request, request_id, database, body)
    async with state.gateway.run(call, on_lineage=body.lineage_sink()) as rows:
        result = await Answer.read(rows, request, state.server.http.max_answer_bytes)
    rendered = result.render(body.include_counters, lineage=body.lineage)
    return result.response(request, request_id, rendered)


# A plain Starlette route: FastAPI's parameter and dependency machinery around the endpoint,
# which needs none of it, cost about 0.07 ms per statement (benchmarks/request_path.py).
_ROUTE = Route("/db/{database}/query/v2", query, methods=["POST"])
router.routes.append(_ROUTE)


@dataclass(frozen=True, slots=True)
class Answer:
    """A statement's rows, already written as the JSON of the answer's ``data.values``, and its
    summary, read from the request path for one answer."""

    fields: list[str]
    values: orjson.Fragment  # the JSON array of the rows
    rows: int
    summary: Summary

    @classmethod
    async def read(cls, rows: RowStream, request: Request, max_bytes: int) -> Answer:
        """The rows, each written as JSON as it comes, in the form the client accepts (plain or
        typed), inside the request path: a value that has no such form, or rows that take more
        than ``max_bytes`` (``server.http.max_answer_bytes``: an answer is built whole), fail the
        statement, as recorded, rather than the answer after it. Only the JSON is kept, a few
        times smaller than the rows' values, in one buffer: the bytes orjson returns keep the
        buffer it wrote into (about 4 KB), so a row's kept apart took that much however small."""
        encode = to_typed if wants_typed(request.headers.get("accept")) else to_plain
        fields = rows.fields
        written = bytearray(b"[")  # each row followed by a comma
        count = 0
        try:
            async for row in rows:
                json = orjson.dumps([encode(value) for value in row])
                if len(written) + len(json) + 2 > max_bytes:  # its comma, the closing bracket
                    raise _too_large(max_bytes)
                written += json
                written += b","
                count += 1
        except UnsupportedValue as exc:
            raise AnswerNotWritable(reason=f"answer_not_writable:{exc}") from exc
        except orjson.JSONEncodeError as exc:  # a string no UTF-8 can hold (a lone surrogate)
            raise AnswerNotWritable(
                "A value in the statement's result cannot be written as JSON: read it over Bolt.",
                reason="answer_not_writable:json",
            ) from exc
        if count:
            written[-1:] = b"]"  # the last comma
        else:
            written += b"]"
        values = orjson.Fragment(bytes(written))
        del written
        return cls(fields, values, count, await rows.summary())

    def render(
        self, include_counters: bool, *, bookmarks: bool = True, lineage: Lineage | None = None
    ) -> dict[str, Any]:
        """``data``, ``counters`` when asked, ``bookmarks`` (unless inside a transaction, where
        Neo4j gives them only at the commit), ``lineage`` when asked, and the truncation notice
        if any (values still plain: :meth:`response` encodes them)."""
        body: dict[str, Any] = {"data": {"fields": self.fields, "values": self.values}}
        if include_counters:
            body["counters"] = dict(self.summary.counters)
        if lineage is not None:
            body["lineage"] = lineage.document()
        if self.summary.plan is not None:  # a caller's own EXPLAIN
            body["queryPlan"] = self.summary.plan  # as the answer's form writes it (answer())
        if bookmarks:
            body["bookmarks"] = self.summary.bookmarks
        notices = [dict(n) for n in self.summary.notifications]
        if notices:
            body["notifications"] = notices
        if self.summary.truncated:
            body["notifications"] = [
                *notices,
                {
                    "code": "CypherGate.RowLimit.Truncated",
                    "severity": "WARNING",
                    "title": "Result truncated",
                    "description": f"Only the first {self.rows} rows are returned: the "
                    "policy's row limit for this DAG.",
                },
            ]
        return body

    def response(self, request: Request, request_id: str, body: dict[str, Any]) -> JSONResponse:
        """``body`` as the answer, its values in the form the client accepts."""
        headers = {}
        if self.summary.truncated:
            headers[TRUNCATED_HEADER] = str(self.rows)
        return answer(request, request_id, body, headers=headers, encoded=True)


def answer(
    request: Request,
    request_id: str,
    body: dict[str, Any],
    *,
    headers: dict[str, str] | None = None,
    encoded: bool = False,
) -> JSONResponse:
    """A 202 answer: ``body``, with the values of its ``data`` encoded in the form the client
    accepts (plain or typed JSON), unless ``encoded`` already (:meth:`Answer.read`)."""
    typed = wants_typed(request.headers.get("accept"))
    if (plan := body.get("queryPlan")) is not None:
        body = {**body, "queryPlan": query_plan(plan, typed=typed)}
    data = body.get("data")
    if data is not None and not encoded:
        encode = to_typed if typed else to_plain
        values = [[encode(value) for value in row] for row in data["values"]]
        body = {**body, "data": {"fields": data["fields"], "values": values}}
    return _JSONAnswer(
        body,
        status_code=SUCCESS_STATUS,
        headers={REQUEST_ID_HEADER: request_id, **(headers or {})},
        media_type=TYPED_MEDIA_TYPE if typed else "application/json",
    )


class _JSONAnswer(JSONResponse):
    """An answer written by orjson, which takes the rows :meth:`Answer.read` wrote as they are."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The statement's rows take more than {max_bytes} bytes of JSON"
        " (server.http.max_answer_bytes), more than a Query API answer may hold: page the"
        " result (SKIP and LIMIT), return less of each row, or read it over Bolt, which streams.",
        reason="answer_too_large",
    )


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


class Body:
    """The request's body, read and parsed only when it is first asked for (after the caller is
    identified), then kept; remembers what the answer needs of it, with the request's
    ``X-CypherGate-Lineage``, checked when the body is read (a bad value is refused and recorded
    as a bad body is). ``optional``: a body of ``/query/v2/tx``, which may be empty and need not
    hold a statement."""

    __slots__ = (
        "_limit",
        "_lineage",
        "_optional",
        "_parsed",
        "_request",
        "_timeout_s",
        "_wants_lineage",
    )

    def __init__(self, request: Request, server: ServerSettings, *, optional: bool = False) -> None:
        self._request = request
        self._limit = server.max_body_bytes
        self._timeout_s = server.http.body_timeout_s
        self._optional = optional
        self._parsed: QueryBody | None = None
        self._wants_lineage = False
        self._lineage: Lineage | None = None

    @property
    def include_counters(self) -> bool:
        return self._parsed is not None and self._parsed.includeCounters

    @property
    def lineage(self) -> Lineage | None:
        """What the statement touched, if the caller asked for it and the request path told."""
        return self._lineage if self._wants_lineage else None

    def lineage_sink(self) -> Callable[[Lineage], None] | None:
        """For :meth:`~proxy.gateway.path.Gateway.run`'s ``lineage``: None unless the request
        has the header (asking for nothing costs nothing)."""
        return self._keep_lineage if LINEAGE_HEADER in self._request.headers else None

    def _keep_lineage(self, lineage: Lineage) -> None:
        self._lineage = lineage

    async def read(self) -> QueryBody:
        """The parsed body (a :class:`TransactionBody` if ``optional``)."""
        if self._parsed is None:
            request = self._request
            raw = await _read_body(
                request, self._limit, timeout_s=self._timeout_s, empty=self._optional
            )
            typed = media_type(request.headers.get("content-type")) == TYPED_MEDIA_TYPE
            model = TransactionBody if self._optional else QueryBody
            self._wants_lineage = _wants_lineage(request.headers.get(LINEAGE_HEADER))
            self._parsed = _parse(raw, typed=typed, model=model)
        return self._parsed

    async def statement(self) -> Statement:
        body = await self.read()
        return Statement(
            text=body.statement,
            parameters=body.parameters,
            access_mode=body.accessMode,
            bookmarks=tuple(body.bookmarks),
        )


def call_of(request: Request, request_id: str, database: str, body: Body) -> Call:
    """The request as the request path's :class:`Call`, on ``database`` as Neo4j names it."""
    headers = combined(request.headers)
    return Call(
        request_id=request_id,
        database=database_name(database),
        authorization=headers.get("authorization"),
        client=client_address(request),
        headers=headers,
        statement=body.statement,
        trace=request_trace(request),
    )


# What may decode to a NaN or an infinite float: the words, an exponent, or 309 digits in a row
# (a number beyond a double needs no exponent: 1 and 400 zeros, then ".5", is Infinity too).
_NOT_JSON_NUMBER = re.compile(rb"NaN|Infinity|[0-9][eE]|[0-9]{309}")


def _finite(value: object) -> bool:
    """No NaN or infinite number anywhere in ``value`` (decoded JSON)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def _parse(raw: bytes, *, typed: bool, model: type[QueryBody]) -> QueryBody:
    raw = without_utf8_bom(raw)
    if not raw and model is TransactionBody:
        return TransactionBody()
    try:
        body = model.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        raise BadRequest(f"Invalid request body: {problems}", reason="invalid_body") from None
    # The parser takes NaN, Infinity and 1e999, which are no JSON (Neo4j refuses them): a
    # cheap look for them first, the walk only if one may be there.
    if _NOT_JSON_NUMBER.search(raw) is not None and not _finite(body.parameters):
        raise BadRequest(
            "Invalid request body: NaN and infinite numbers are not JSON.", reason="invalid_body"
        )
    if not typed:
        return body
    try:
        parameters = {k: from_typed(v, f"parameters.{k}") for k, v in body.parameters.items()}
    except InvalidValue as exc:
        raise BadRequest(f"Invalid request body: {exc}", reason="invalid_typed_value") from None
    return body.model_copy(update={"parameters": parameters})


def _wants_lineage(header: str | None) -> bool:
    value = (header or "false").strip().lower()
    if value not in ("true", "false"):
        raise BadRequest(
            f"Header {LINEAGE_HEADER} must be true or false.", reason="bad_lineage_header"
        )
    return value == "true"


async def _read_body(
    request: Request, limit: int, *, timeout_s: float, empty: bool = False
) -> bytes:
    """The body, refusing more than ``limit`` bytes without reading them all, or one that takes
    longer than ``timeout_s`` to arrive (a slow client holds one of its identity's admission
    slots meanwhile: :mod:`proxy.gateway.admission`). ``empty``: a body declared empty is
    accepted whatever its media type (the neo4j driver commits with none)."""
    if empty and request.headers.get("content-length") == "0":
        return b""
    content_type = request.headers.get("content-type")
    if media_type(content_type) not in _MEDIA_TYPES:
        raise UnsupportedMediaType(reason="content_type")
    if _CHARSET.search(content_type or "") is not None:  # JSON is UTF-8 (RFC 8259)
        raise UnsupportedMediaType(reason="content_charset")
    accept = request.headers.get("accept", "")
    if accept and not any(
        media_type(kind) in {*_MEDIA_TYPES, "application/*", "*/*"} for kind in accept.split(",")
    ):
        raise UnsupportedMediaType(reason="accept")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(reason="body_too_large")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(reason="body_too_large")
                chunks.append(chunk)
    except TimeoutError:
        raise RequestTimeout(reason="body_timeout") from None
    except ClientDisconnect:
        raise ClientDisconnected(reason="client_disconnected") from None
    return b"".join(chunks)
