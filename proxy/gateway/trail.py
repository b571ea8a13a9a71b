"""One call's audit trail: what its steps learnt, written as records at two moments.

A call leaves one ``decision`` record, written *ahead* of execution (:meth:`Trail.ahead`): if it
cannot be written, nothing runs. An allowed call leaves one ``outcome`` record after Neo4j
answered. A refused call has its final status on its decision record and no outcome. A
statement of an explicit transaction leaves the same records, naming the transaction (its end
leaves a record of its own: :mod:`proxy.gateway.transactions`).

Every way a call can end passes through :meth:`Trail.recording` (or :meth:`Trail.refused`), so
every failure is recorded exactly once, by one code path, and counted once in ``/metrics``.
The steps fill in plain attributes; a record is built from them only when it is written, so a
call costs two record objects and no copies in between.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal

from proxy.analysis import Analysis
from proxy.audit.record import (
    AuditEvent,
    EventKind,
    elapsed_us,
    statement_digest,
    utc_timestamp,
    verdict_of,
)
from proxy.clock import Clock
from proxy.errors import AuditUnavailable, CypherGateError, RequestCancelled
from proxy.gateway.call import SUCCESS_STATUS, Call, Statement, recorded_context
from proxy.gateway.seams import AuditLog, LineageSink
from proxy.metrics import Metrics
from proxy.plan.text import without_secrets
from proxy.policy import Decision
from proxy.principal import Identity, Principal
from proxy.statement import Summary, reason_shown
from proxy.tracing import RequestTrace

log = logging.getLogger(__name__)


class Trail:
    """The audit trail of one call (see the module docstring)."""

    __slots__ = (
        "_ahead",
        "_audit",
        "_call",
        "_clock",
        "_committed",
        "_lineage",
        "_metrics",
        "_started",
        "_summary",
        "_unwritable",
        "access_mode",
        "analysis",
        "credential",
        "decision",
        "parameters",
        "principal",
        "query_type",
        "requested_access_mode",
        "statement",
        "statement_sha256",
        "transaction",
    )

    def __init__(
        self,
        call: Call,
        *,
        clock: Clock,
        audit: AuditLog,
        metrics: Metrics,
        lineage: LineageSink | None = None,
    ) -> None:
        self._call = call
        self._clock = clock
        self._audit = audit
        self._metrics = metrics
        self._lineage = lineage  # None when [lineage] is off: nothing more is done
        self._started = clock()
        self._ahead = False  # the decision record is durable
        self._unwritable = False  # the log refused this call's decision record
        self._summary: Summary | None = None
        # Failed, but its own transaction had committed (True), or some of its batches had
        # ("partial": CALL { ... } IN TRANSACTIONS).
        self._committed: bool | Literal["partial"] = False
        self.principal: dict[str, str | int | None] | None = None
        self.statement: str | None = None
        self.statement_sha256: str | None = None
        self.parameters: dict[str, str | None] | None = None
        self.requested_access_mode: str | None = None
        self.query_type: str | None = None
        self.analysis: dict[str, Any] | None = None
        self.decision: dict[str, Any] | None = None
        self.access_mode: str | None = None
        self.credential: dict[str, str] | None = None
        # The explicit transaction the statement runs in: its id, and the caller's context.
        self.transaction: dict[str, Any] | None = None

    # ------------------------------------------------------------------ what the steps learnt

    def identified(self, identity: Identity) -> None:
        self.principal = dict(identity.as_document())

    def acting_as(self, principal: Principal) -> None:
        self.principal = principal.as_document()

    def asked(self, statement: Statement, parameters: dict[str, str | None]) -> str:
        """The statement, its password literals hidden (digested so too: a digest of the text
        would let a guess be checked), and its parameters as keyed digests (never their
        values). Returns the statement as recorded, for the policy's input."""
        shown = without_secrets(statement.text)
        self.statement = shown
        self.statement_sha256 = statement_digest(shown)
        self.parameters = parameters
        self.requested_access_mode = statement.access_mode
        if statement.metadata and self.transaction is None:
            # An auto-commit statement's own transaction: its metadata, no id.
            self.transaction = {"metadata": recorded_context(statement.metadata)}
        return shown

    def analysed(self, analysis: Analysis) -> None:
        self.query_type = analysis.query_type
        self.analysis = analysis.document

    def decided(self, decision: Decision) -> None:
        self.decision = decision.as_document()

    def finished(self, summary: Summary) -> None:
        """The statement ran to its end; the outcome record carries its summary."""
        self._summary = summary

    def committed_anyway(self, summary: Summary | None) -> None:
        """The statement failed after its transaction of its own had committed (``summary``, if
        known): the outcome record says so, with what it wrote, whatever its status."""
        if summary is not None:
            self._summary = summary
            self._committed = True

    def committed_in_part(self) -> None:
        """The statement commits in batches of its own (``CALL { ... } IN TRANSACTIONS``) and
        failed, or was left, once sent: the batches that ran before stay committed, how many is
        not known. The outcome record says so, unless it is known to have committed whole."""
        if not self._committed:
            self._committed = "partial"

    # ------------------------------------------------------------------ records

    async def ahead(self) -> None:
        """Write the decision record before anything runs; if it cannot be written
        (:class:`AuditUnavailable`), nothing may run."""
        try:
            with self._call.trace.step("audit.ahead"):
                await self._write(self._event("decision", time=utc_timestamp(self._started)))
        except AuditUnavailable:
            self._unwritable = True
            raise
        self._ahead = True

    def recording(self) -> AbstractAsyncContextManager[None]:
        """Run the call's steps inside the block; when they end, record how. A
        :class:`CypherGateError` is recorded and raised again; anything else is recorded, and
        raised, as an internal error that names no detail (the log has the traceback)."""
        return _Recording(self)

    async def refused(self, error: CypherGateError) -> None:
        """Record a call a front door turns away before the request path could start."""
        await self.conclude(error)

    @property
    def request_id(self) -> str:
        return self._call.request_id

    async def conclude(self, error: CypherGateError | None) -> None:
        """The call's last record: the outcome once the decision is durable, else the decision
        with its final status. An outcome the log cannot take now is never raised: the statement
        ran (or failed) and its decision is durable, so failing the answer now would tell a
        client that a committed write did not happen, inviting a second one. The log keeps it
        and writes it late (see ``AuditLog.append_after``)."""
        now = self._clock()
        status = SUCCESS_STATUS if error is None else error.status
        if self._ahead:
            summary = self._summary if error is None or self._committed else None
            event = self._event(
                "outcome",
                time=utc_timestamp(now),
                now=now,
                status=status,
                error=error,
                summary=summary,
            )
        else:
            event = self._event(
                "decision", time=utc_timestamp(now), now=now, status=status, error=error
            )
        self._count(event)
        trace = self._call.trace
        if trace.recording:
            _traced(trace, event)
        if self._unwritable:
            return  # the log already refused this call: it was refused for that
        if not self._ahead:
            with trace.step("audit.decision"):
                await self._write(event)
        else:
            with trace.step("audit.outcome"):
                receipt = await self._audit.append_after(event)
            if receipt is None:
                self._metrics.audit_failures.labels(event.event).inc()
                log.error("outcome record for request %s not written in time", event.request_id)
        if self._lineage is not None:
            # After the record: lineage never tells of a statement the audit log does not.
            self._lineage.ended(event, self._call.headers)

    def _event(
        self,
        kind: EventKind,
        *,
        time: str,
        now: float | None = None,
        status: int | None = None,
        error: CypherGateError | None = None,
        summary: Summary | None = None,
    ) -> AuditEvent:
        outcome = kind == "outcome"
        return AuditEvent(
            event=kind,
            time=time,
            request_id=self._call.request_id,
            client=self._call.client,
            principal=self.principal,
            database=self._call.database,
            # The outcome refers to its decision's statement by digest; parameters once only.
            statement=None if outcome else self.statement,
            statement_sha256=self.statement_sha256,
            query_type=self.query_type,
            decision=self.decision,
            access_mode=self.access_mode,
            status=status,
            error=None if error is None else error.as_document(),
            rows=None if summary is None else summary.rows,
            latency_us=None if now is None else elapsed_us(self._started, now),
            parameters=None if outcome else self.parameters,
            credential=self.credential,
            counters=None if summary is None else dict(summary.counters),
            analysis=self.analysis,
            requested_access_mode=self.requested_access_mode,
            truncated=None if summary is None else summary.truncated or None,
            transaction=_outcome_transaction(self.transaction) if outcome else self.transaction,
            committed=(self._committed or None) if outcome and error is not None else None,
        )

    async def _write(self, event: AuditEvent) -> None:
        try:
            await self._audit.append(event)
        except AuditUnavailable:
            self._metrics.audit_failures.labels(event.event).inc()
            log.error("audit log unwritable; request %s refused", event.request_id)
            raise
        except Exception as exc:
            self._metrics.audit_failures.labels(event.event).inc()
            raise AuditUnavailable(reason=f"audit_error:{type(exc).__name__}") from exc

    def _count(self, finished: AuditEvent) -> None:
        """The call in /metrics: verdict, status, time and (if refused) kinds of reason."""
        verdict = verdict_of(finished.decision)
        self._metrics.answered(verdict, finished.status, (finished.latency_us or 0) / 1_000_000)
        if verdict == "deny":
            reasons = (finished.decision or {}).get("reasons") or []
            if not reasons and finished.error:
                reasons = [finished.error["reason"]]
            for reason in reasons:
                self._metrics.denied(str(reason))


def _outcome_transaction(transaction: dict[str, Any] | None) -> dict[str, Any] | None:
    """An outcome names its statement's explicit transaction by id only (the metadata is on the
    decision), and an auto-commit statement's not at all."""
    if transaction is None or "id" not in transaction:
        return None
    return {"id": transaction["id"]}


class _Recording:
    """:meth:`Trail.recording`'s block. A class, not a generator: an async context manager
    made of a generator costs about 2 µs more, and every statement has one."""

    __slots__ = ("_trail",)

    def __init__(self, trail: Trail) -> None:
        self._trail = trail

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: object
    ) -> None:
        trail = self._trail
        if error is None:
            await trail.conclude(None)
        elif isinstance(error, CypherGateError):
            await trail.conclude(error)  # and raised again as it is
        elif isinstance(error, Exception):
            internal = CypherGateError(reason=f"internal:{type(error).__name__}")
            log.error("request %s failed inside the gateway", trail.request_id, exc_info=error)
            await trail.conclude(internal)
            raise internal from error
        elif isinstance(error, asyncio.CancelledError):
            # Cancelled (the gateway stopping ends what its connections run): its decision may
            # be on record ahead, and must not be left unanswered. The cancellation goes on, and
            # a second one (a shutdown's own time-out) does not stop the outcome's write.
            await asyncio.shield(trail.conclude(RequestCancelled(reason="cancelled")))


def _traced(trace: RequestTrace, finished: AuditEvent) -> None:
    """The call's verdict on its request's span: identifiers, verdict and reasons only (never
    the statement, its parameters or anything of the caller's credential)."""
    trace.set("cyphergate.request_id", finished.request_id)
    if finished.database is not None:
        trace.set("db.namespace", finished.database)
    principal = finished.principal or {}
    if isinstance(dag := principal.get("dag"), str):
        trace.set("cyphergate.dag", dag)
    decision = finished.decision or {}
    trace.set("cyphergate.verdict", verdict_of(finished.decision))
    reasons = [reason_shown(str(reason)) for reason in decision.get("reasons") or []]
    if finished.error is not None:
        reason = str(finished.error["reason"])
        reasons = reasons or [reason]
        trace.fail(reason)
    if reasons:
        trace.set("cyphergate.reasons", reasons)
    if isinstance(decision_id := decision.get("decision_id"), str):
        trace.set("cyphergate.decision_id", decision_id)
    if finished.query_type is not None:
        trace.set("cyphergate.query_type", finished.query_type)
    if finished.access_mode is not None:
        trace.set("cyphergate.access_mode", finished.access_mode)
    if finished.status is not None:
        trace.set("cyphergate.status", finished.status)
    if finished.transaction is not None:
        trace.set("cyphergate.transaction_id", str(finished.transaction["id"]))
