"""The request path: authenticate, analyse, decide, audit, execute, audit.

This is the spine of CypherGate and knows nothing of HTTP frameworks. Every request leaves
exactly one audit trail: one ``decision`` event (written before anything runs), and for an
allowed request one ``outcome`` event after Neo4j answered. If the decision event cannot be
written, nothing runs.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

from proxy.analysis import Analysis, Analyzer
from proxy.audit import AuditLog
from proxy.audit.checkpoint import ParameterDigester
from proxy.audit.record import (
    AuditEvent,
    concluded,
    statement_digest,
    utc_timestamp,
    verdict_of,
)
from proxy.auth import SchemeRouter
from proxy.clock import Clock
from proxy.errors import AuditUnavailable, BadRequest, CypherGateError, PolicyDenied
from proxy.graph import Execution, GraphExecutor, QueryResult
from proxy.metrics import Metrics
from proxy.policy import AccessMode, Decision, PolicyEngine, policy_input
from proxy.principal import DagResolver, Principal
from proxy.values import InvalidValue, from_typed

log = logging.getLogger(__name__)

# Neo4j's Query API answers a successful statement with 202 Accepted; so does the gateway.
SUCCESS_STATUS = 202


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


@dataclass(frozen=True, slots=True)
class Call:
    """One incoming query request, as the HTTP layer hands it over."""

    request_id: str
    database: str
    authorization: str | None
    client: str | None
    headers: Mapping[str, str]
    read_body: Callable[[], Awaitable[bytes]]
    typed_parameters: bool = False


@dataclass(frozen=True, slots=True)
class Answer:
    """A successful result, and whether counters were asked for."""

    result: QueryResult
    include_counters: bool


class Gateway:
    """Runs the request path with its collaborators, each behind a Protocol."""

    def __init__(
        self,
        *,
        authenticator: SchemeRouter,
        resolver: DagResolver,
        analyzer: Analyzer,
        policy: PolicyEngine,
        graph: GraphExecutor,
        audit: AuditLog,
        clock: Clock,
        default_timeout_s: float,
        digester: ParameterDigester | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._resolver = resolver
        self._analyzer = analyzer
        self._policy = policy
        self._graph = graph
        self._audit = audit
        self._clock = clock
        self._default_timeout_s = default_timeout_s
        self._digester = digester or ParameterDigester(None)
        self._metrics = metrics or Metrics()

    async def query(self, call: Call) -> Answer:
        """Handle one query; raises :class:`CypherGateError` for every refusal or failure."""
        started = self._clock()
        trail = _empty_trail(call, started)
        try:
            identity = await self._authenticator.authenticate(call.authorization)
            trail = replace(trail, principal=dict(identity.as_document()))
            principal = self._resolver.resolve(identity, call.headers)
            trail = replace(trail, principal=principal.as_document())
            body = _parse(await call.read_body(), typed=call.typed_parameters)
            trail = replace(
                trail,
                statement=body.statement,
                statement_sha256=statement_digest(body.statement),
                parameters=self._digester.digests(body.parameters),
                requested_access_mode=body.accessMode,
            )
            analysis = await self._analyzer.analyse(call.database, body.statement)
            trail = replace(trail, query_type=analysis.query_type, analysis=analysis.document)
            decision = await self._decide(principal, call.database, body, analysis)
            trail = replace(trail, decision=decision.as_document())
            if not decision.enforced_allow:
                raise PolicyDenied(list(decision.reasons))
            if not decision.allow:
                log.warning(
                    "shadow mode: request %s of DAG %s runs although the policy refused it (%s)",
                    call.request_id,
                    principal.dag,
                    ", ".join(decision.reasons),
                )
        except CypherGateError as error:
            await self._record(self._finished(trail, started, error=error))
            raise
        except Exception as exc:
            internal = CypherGateError(reason=f"internal:{type(exc).__name__}")
            log.exception("request %s failed inside the gateway", call.request_id)
            await self._record(self._finished(trail, started, error=internal))
            raise internal from exc

        access_mode = _access_mode(analysis, decision, body.accessMode)
        async with contextlib.AsyncExitStack() as held:
            try:
                checkout = await held.enter_async_context(self._graph.checkout(principal.dag))
            except CypherGateError as error:  # no credential for the DAG: nothing can run
                await self._record(
                    self._finished(replace(trail, access_mode=access_mode), started, error=error)
                )
                raise
            except Exception as exc:  # still exactly one trail, and nothing ran
                internal = CypherGateError(reason=f"internal:{type(exc).__name__}")
                log.exception("request %s could not get a Neo4j credential", call.request_id)
                await self._record(
                    self._finished(replace(trail, access_mode=access_mode), started, error=internal)
                )
                raise internal from exc
            # Write-ahead: if this record cannot be written, AuditUnavailable ends it here.
            credential = {"user": checkout.user}
            ahead = replace(trail, access_mode=access_mode, credential=credential)
            try:
                await self._record(ahead)
            except AuditUnavailable as error:
                self._finished(ahead, started, error=error)  # still counted in /metrics
                raise
            outcome = replace(
                trail,
                event="outcome",
                statement=None,
                parameters=None,
                access_mode=access_mode,
                credential=credential,
            )
            try:
                result = await checkout.run(
                    Execution(
                        database=call.database,
                        statement=body.statement,
                        parameters=body.parameters,
                        access_mode=access_mode,
                        timeout_s=decision.timeout_s or self._default_timeout_s,
                        metadata=_metadata(principal, call.request_id, decision.decision_id),
                        bookmarks=tuple(body.bookmarks),
                        row_limit=decision.row_limit,
                        row_limit_action=decision.row_limit_action,
                    )
                )
            except CypherGateError as error:
                await self._record_outcome(self._finished(outcome, started, error=error))
                raise
            except Exception as exc:
                internal = CypherGateError(reason=f"internal:{type(exc).__name__}")
                log.exception("request %s failed while running", call.request_id)
                await self._record_outcome(self._finished(outcome, started, error=internal))
                raise internal from exc
        finished = self._finished(outcome, started, error=None)
        await self._record_outcome(
            replace(
                finished,
                rows=len(result.values),
                counters=dict(result.counters),
                truncated=result.truncated or None,
            )
        )
        return Answer(result=result, include_counters=body.includeCounters)

    async def refuse(self, call: Call, error: CypherGateError) -> None:
        """Record a request the HTTP layer turns away (with its caller, if it authenticates)."""
        started = self._clock()
        principal: dict[str, str | int | None] | None = None
        with contextlib.suppress(CypherGateError):
            identity = await self._authenticator.authenticate(call.authorization)
            principal = dict(identity.as_document())
        trail = _empty_trail(call, started)
        await self._record(
            self._finished(replace(trail, principal=principal), started, error=error)
        )

    async def _decide(
        self, principal: Principal, database: str, body: QueryBody, analysis: Analysis
    ) -> Decision:
        document = policy_input(
            principal,
            database=database,
            statement=body.statement,
            parameter_names=list(body.parameters),
            requested_access_mode=body.accessMode,
            analysis=analysis,
        )
        return await self._policy.decide(document)

    def _finished(
        self, event: AuditEvent, started: float, *, error: CypherGateError | None
    ) -> AuditEvent:
        """The request's last record, stamped. Every request passes here exactly once, so this
        is also where /metrics counts it."""
        finished = concluded(
            event,
            started=started,
            now=self._clock(),
            status=SUCCESS_STATUS if error is None else error.status,
            error=None if error is None else error.as_document(),
        )
        self._count(finished)
        return finished

    def _count(self, finished: AuditEvent) -> None:
        """The request in /metrics: verdict, status, time and (if refused) kinds of reason."""
        verdict = verdict_of(finished.decision)
        self._metrics.requests.labels(verdict, str(finished.status)).inc()
        seconds = (finished.latency_us or 0) / 1_000_000
        self._metrics.request_seconds.labels(verdict).observe(seconds)
        if verdict == "deny":
            reasons = (finished.decision or {}).get("reasons") or []
            if not reasons and finished.error:
                reasons = [finished.error["reason"]]
            for reason in reasons:
                self._metrics.denied(str(reason))

    async def _record(self, event: AuditEvent) -> None:
        try:
            await self._audit.append(event)
        except AuditUnavailable:
            self._metrics.audit_failures.labels(event.event).inc()
            log.error("audit log unwritable; request %s refused", event.request_id)
            raise
        except Exception as exc:
            self._metrics.audit_failures.labels(event.event).inc()
            raise AuditUnavailable(reason=f"audit_error:{type(exc).__name__}") from exc

    async def _record_outcome(self, event: AuditEvent) -> None:
        # The statement has already run (or failed) and its decision record is durable. Failing
        # the response now would tell a client that a committed write did not happen, inviting a
        # second one; so the outcome is logged as missing instead, and verify shows the gap.
        try:
            await self._record(event)
        except AuditUnavailable:
            log.error("outcome record for request %s could not be written", event.request_id)


def _empty_trail(call: Call, started: float) -> AuditEvent:
    return AuditEvent(
        event="decision",
        time=utc_timestamp(started),
        request_id=call.request_id,
        client=call.client,
        database=call.database,
    )


def new_request_id() -> str:
    """A fresh request id."""
    return str(uuid.uuid4())


def _metadata(principal: Principal, request_id: str, decision_id: str) -> dict[str, str | int]:
    """Transaction metadata: joins Neo4j's SHOW TRANSACTIONS (and query.log) to the audit log."""
    metadata: dict[str, str | int | None] = {
        "dag_id": principal.dag,
        "task_id": principal.task,
        "run_id": principal.run,
        "try_number": principal.try_number,
        "request_id": request_id,
        "decision_id": decision_id,
    }
    return {key: value for key, value in metadata.items() if value is not None}


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


def _access_mode(
    analysis: Analysis, decision: Decision, requested: AccessMode | None
) -> AccessMode:
    """The most restrictive of what Neo4j, the policy and the caller said."""
    if analysis.is_read_only or decision.access_mode == "READ" or requested == "READ":
        return "READ"
    return "WRITE"
