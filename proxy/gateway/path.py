"""The request path of one statement, whichever front door it came through.

1. **receive**: a front door (``proxy/api/query.py``) translates its wire format into a
   :class:`~proxy.gateway.call.Call`;
2. **authenticate** the call's credential into an identity, and **resolve** the DAG it acts as;
3. **read** the statement (only now: a caller nobody identified gets nothing parsed);
4. **analyse** it with Neo4j's own ``EXPLAIN`` (cached);
5. **decide** on it with the policy (OPA itself, every time: its decision id and revision);
6. **hold a credential**: the DAG's Neo4j login, for as long as the statement runs;
7. **record ahead**: the decision record is durable before anything runs;
8. **execute** it; its rows stream to the front door inside :meth:`Gateway.run`'s block;
9. **record the outcome** when the block ends (:mod:`proxy.gateway.trail`), and tell the
   lineage sink, if any, of the statement's end (:mod:`proxy.lineage_events`).

A policy check that needs no plan (deciding on the principal and the statement's text) slots in
between steps 3 and 4. A front door holding an explicit transaction open (:meth:`Gateway.begin`)
passes it as the ``transaction`` of each statement: steps 2 to 5, 7 and 9 are the same for it as
for any other statement, step 6 is the transaction's (held from its first statement to its end),
and step 8 runs in it (see :mod:`proxy.gateway.transactions`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import replace
from typing import Any

from proxy.analysis import Analysis
from proxy.audit.checkpoint import ParameterDigester
from proxy.clock import Clock
from proxy.errors import CypherGateError, DatabaseNotFound, Neo4jClientError, PolicyDenied
from proxy.gateway.admission import Admission
from proxy.gateway.call import Call, Statement, check_size, passed_on
from proxy.gateway.planning import planning_refusal
from proxy.gateway.rates import RateLimits
from proxy.gateway.seams import (
    AuditLog,
    CallerAuthenticator,
    CredentialBroker,
    GraphExecutor,
    LineageSink,
    PolicyDecider,
    StatementAnalyzer,
)
from proxy.gateway.slot import Slot
from proxy.gateway.trail import Trail
from proxy.gateway.transactions import Transaction, neo4j_metadata
from proxy.lineage import Lineage, Touched
from proxy.metrics import Metrics
from proxy.policy import Decision, Preflight, policy_input, preflight_input
from proxy.principal import DagResolver, Identity, Principal
from proxy.settings import AdmissionSettings, RateLimitSettings
from proxy.statement import AccessMode, Execution, RowStream, reason_shown
from proxy.tracing import NO_TRACING, Step, Tracing

log = logging.getLogger(__name__)


class Gateway:
    """Runs the request path with its collaborators, each behind a Protocol."""

    def __init__(
        self,
        *,
        authenticator: CallerAuthenticator,
        resolver: DagResolver,
        analyzer: StatementAnalyzer,
        policy: PolicyDecider,
        credentials: CredentialBroker,
        executor: GraphExecutor,
        audit: AuditLog,
        clock: Clock,
        default_timeout_s: float,
        digester: ParameterDigester | None = None,
        metrics: Metrics | None = None,
        admission: Admission | None = None,
        tracing: Tracing = NO_TRACING,
        rates: RateLimits | None = None,
        lineage_namespace: str | None = None,
        lineage: LineageSink | None = None,
    ) -> None:
        self._authenticator = authenticator
        self._resolver = resolver
        self._analyzer = analyzer
        self._policy = policy
        self._credentials = credentials
        self._executor = executor
        self._audit = audit
        self._clock = clock
        self._default_timeout_s = default_timeout_s
        self._digester = digester or ParameterDigester(None)
        self._metrics = metrics or Metrics()
        # Unbounded only where a test builds a gateway without one; create_app always has one.
        self._admission = admission or Admission(AdmissionSettings(max_in_flight=1 << 30))
        # Makes each request's span (proxy/tracing.py); the front doors start them.
        self.tracing = tracing
        self._rates = rates or RateLimits(RateLimitSettings())  # no limit unless configured
        # The Neo4j server as lineage names it (namespace_of(neo4j.uri)); None: no lineage.
        self._lineage_namespace = lineage_namespace
        self._lineage = lineage  # told of every statement that ends; None when lineage is off

    def with_executor(self, executor: GraphExecutor) -> Gateway:
        """The same request path (the same caches, policy, audit log) with statements run by
        ``executor``: the Bolt door's relays records without decoding them."""
        other = copy.copy(self)
        other._executor = executor
        return other

    def begin(
        self,
        *,
        database: str,
        access_mode: AccessMode | None,
        bookmarks: tuple[str, ...],
        metadata: Mapping[str, Any],
        timeout_s: float | None,
    ) -> Transaction:
        """An explicit transaction on ``database``, for :meth:`run`'s ``transaction``. Nothing
        opens on Neo4j until its first statement is decided (see
        :mod:`proxy.gateway.transactions`). ``access_mode``, ``bookmarks``, ``metadata`` and
        ``timeout_s`` are the caller's, as its begin request gave them."""
        return Transaction(
            database=database,
            access_mode=access_mode,
            bookmarks=bookmarks,
            metadata=metadata,
            timeout_s=timeout_s,
            credentials=self._credentials,
            starter=self._executor,
            audit=self._audit,
            clock=self._clock,
            metrics=self._metrics,
            schema_changed=self._analyzer.schema_changed,
        )

    @contextlib.asynccontextmanager
    async def run(
        self,
        call: Call,
        *,
        transaction: Transaction | None = None,
        on_lineage: Callable[[Lineage], None] | None = None,
        on_execution: Callable[[Execution], None] | None = None,
    ) -> AsyncIterator[RowStream]:
        """Take one statement down the request path (see the module docstring).

        It holds an admission slot (:mod:`proxy.gateway.admission`) until its outcome is
        recorded, when the block (inside which its rows stream) ends. Every refusal or failure
        is a :class:`CypherGateError`, recorded once. It runs in an auto-commit transaction as
        the DAG's credential, held for it alone, or in ``transaction`` after the statements
        before it (a refusal or failure rolls it back). ``on_lineage`` is told what it touches
        (from the analysis decided on) once allowed, before it runs: a refused statement gives
        none; ``on_execution`` how it runs (its time-out, say), just before it does.
        """
        trail = Trail(
            call, clock=self._clock, audit=self._audit, metrics=self._metrics, lineage=self._lineage
        )
        if transaction is None:
            async with self._admitted(trail, call) as slot, trail.recording():
                principal, statement, analysis, decision, _ = await self._decided(call, trail, slot)
                self._tell_lineage(call, analysis, on_lineage)
                mode = _access_mode(analysis, decision, statement.access_mode)
                execution = self._execution(call, principal, statement, analysis, decision, mode)
                if on_execution is not None:
                    on_execution(execution)
                trail.access_mode = mode
                try:
                    async with self._credentials.hold(principal.dag) as login:
                        trail.credential = {"user": login.user}
                        await trail.ahead()  # if this cannot be written, AuditUnavailable ends it
                        started: RowStream | None = None
                        try:
                            with call.trace.step("execute"):
                                async with self._executor.run(execution, login) as rows:
                                    started = rows
                                    yield rows
                                    trail.finished(await rows.summary())  # for the outcome
                        except BaseException:
                            if started is not None:  # asked once the executor closed it
                                trail.committed_anyway(started.committed())
                            if analysis.commits_in_batches:
                                trail.committed_in_part()
                            raise
                finally:
                    if analysis.query_type == "s":  # see Analyzer.schema_changed
                        self._analyzer.schema_changed()
            return
        trail.transaction = transaction.context()
        async with (
            transaction.statement(call.request_id),
            self._admitted(trail, call) as slot,
            trail.recording(),
        ):
            principal, statement, analysis, decision, may_write = await self._decided(
                call, trail, slot, transaction
            )
            self._tell_lineage(call, analysis, on_lineage)
            placement = await transaction.place(
                principal,
                analysis,
                read_only=decision.access_mode == "READ",
                may_write=may_write,
                metadata=neo4j_metadata(
                    principal, call.request_id, decision.decision_id, call.trace.traceparent()
                ),
                timeout_s=decision.timeout_s or self._default_timeout_s,
            )
            execution = self._execution(
                call, principal, statement, analysis, decision, placement.access_mode
            )
            if on_execution is not None:
                on_execution(execution)
            trail.access_mode = placement.access_mode
            trail.credential = {"user": placement.user}
            await trail.ahead()  # if this cannot be written, AuditUnavailable ends it here
            with call.trace.step("execute"):
                async with placement.upstream.run(execution) as rows:
                    yield rows
                    trail.finished(await rows.summary())  # for the outcome record

    def _tell_lineage(
        self, call: Call, analysis: Analysis, on_lineage: Callable[[Lineage], None] | None
    ) -> None:
        if on_lineage is not None and self._lineage_namespace is not None:
            touched = Touched.from_analysis(call.database, analysis.document)
            on_lineage(Lineage(call.request_id, self._lineage_namespace, touched))

    def _admitted(self, trail: Trail, call: Call) -> Slot:
        """An admission slot for the block (:class:`~proxy.gateway.slot.Slot`)."""
        return Slot(self._rates, self._admission, trail, call)

    async def admit(
        self, call: Call, identity: Identity | None = None, transaction: Transaction | None = None
    ) -> Principal:
        """Who a front door's caller is (``identity`` if the door verified it already) and which
        DAG it acts as, before any statement (Bolt's ``LOGON``). A refusal is recorded and
        raised; an acceptance records nothing. ``transaction``: a request to it that runs no
        statement (a keep-alive, commit or rollback) resolves as a statement would and must be
        its caller's and DAG's (:meth:`Transaction.admit`); a refusal rolls it back, as a
        refused statement's does: a commit naming a DAG it may not act as commits nothing."""
        if identity is None:
            identity = await self.identify(call)
        async with contextlib.AsyncExitStack() as turn:
            if transaction is not None:  # a refusal in its turn rolls it back
                await turn.enter_async_context(transaction.statement(call.request_id))
            try:
                principal = self._resolver.resolve(identity, call.headers, call.context_names)
                if transaction is not None:
                    transaction.admit(principal, call)
            except CypherGateError as error:
                await self.refuse(call, error, identity=identity)
                raise
        return principal

    async def opening(self, call: Call) -> Principal:
        """Who begins a transaction on the call's database (:meth:`admit`), if its DAG may use
        the database: the policy's preflight, which every statement's decision starts with,
        decides at the begin too, so a database without a grant opens nothing and holds no slot
        (403, ``database_not_granted:...``). A refusal is recorded, with the preflight's
        decision, and raised; an acceptance records nothing (its statements and end are)."""
        principal = await self.admit(call)
        trail = Trail(call, clock=self._clock, audit=self._audit, metrics=self._metrics)
        trail.acting_as(principal)
        try:
            await self._preflight(principal, call, trail)
        except CypherGateError as error:
            await trail.refused(error)
            raise
        return principal

    async def _preflight(self, principal: Principal, call: Call, trail: Trail) -> Preflight:
        """The policy's first question, whether the DAG may use the call's database at all
        (and call procedures, functions, write); a refusal is put on ``trail`` and raised."""
        with call.trace.step("decide.preflight") as step:
            preflight = await self._policy.preflight(
                preflight_input(principal, database=call.database)
            )
            step.set("cyphergate.decision.cached", preflight.decision.cached)
        if not preflight.decision.allow:
            trail.decided(preflight.decision)
            raise PolicyDenied(list(preflight.decision.reasons))
        return preflight

    async def identify(self, call: Call) -> Identity:
        """The caller's verified identity, for a front door that must know it before any
        statement (whose transaction is this?). A refusal is recorded and raised; a success
        records nothing (what the caller does next is recorded)."""
        try:
            self._rates.before_verification(call.client)
            with call.trace.step("authenticate"):
                return await self._authenticator.authenticate(call.authorization)
        except CypherGateError as error:
            trail = Trail(call, clock=self._clock, audit=self._audit, metrics=self._metrics)
            await trail.refused(error)
            raise

    async def refuse(
        self,
        call: Call,
        error: CypherGateError,
        *,
        identity: Identity | None = None,
        transaction: Transaction | None = None,
    ) -> None:
        """Record a call a front door turns away (with its caller, if it authenticates, or
        ``identity`` if the front door already verified it). ``transaction``: the call was a
        request to it (its body refused, say), and is rolled back as a refused statement's is:
        a commit refused so commits nothing, now or later."""
        trail = Trail(call, clock=self._clock, audit=self._audit, metrics=self._metrics)
        # Naming the caller is not worth a verification (an STS call) its address has no
        # quota left for: then the record names none.
        if identity is None and self._rates.may_verify(call.client):
            with contextlib.suppress(CypherGateError):
                identity = await self._authenticator.authenticate(call.authorization)
        if identity is not None:
            trail.identified(identity)
        await trail.refused(error)
        if transaction is not None:
            await transaction.rollback(request_id=call.request_id, cause="failure")

    async def _decided(
        self, call: Call, trail: Trail, slot: Slot, transaction: Transaction | None = None
    ) -> tuple[Principal, Statement, Analysis, Decision, bool]:
        """Steps 2 to 5: who is calling, as which DAG, with which statement, and may it run?
        Raises unless the policy allows it (or shadow mode lets it run). Last, whether any
        statement of the DAG on the database may write (the preflight's ``writes``). Its
        ``slot`` counts against its caller's share once verified, before its body is read."""
        trace = call.trace
        with trace.step("authenticate"):
            identity = await self._authenticator.authenticate(call.authorization)
            trail.identified(identity)
            principal = self._resolver.resolve(identity, call.headers, call.context_names)
        trail.acting_as(principal)
        self._rates.after_verification(identity, principal)
        if transaction is not None:
            transaction.admit(principal, call)
        await slot.claim(identity)
        statement = await call.statement()
        check_size(statement)  # before its text is read or its parameters digested
        if transaction is not None:
            # The transaction's access mode and bookmarks were given when it began.
            statement = replace(
                statement, access_mode=transaction.requested_access_mode, bookmarks=()
            )
        shown = trail.asked(statement, self._digester.digests(statement.parameters))
        preflight = await self._preflight(principal, call, trail)
        with trace.step("analyse") as step:
            analysis = await self._analyse(call.database, statement.text, preflight, trail, step)
        trail.analysed(analysis)
        with trace.step("decide") as step:
            decision = await self._decide(principal, call.database, statement, shown, analysis)
            step.set("cyphergate.decision.cached", decision.cached)
        trail.decided(decision)
        if not decision.enforced_allow:
            raise PolicyDenied(list(decision.reasons))
        if not decision.allow:
            log.warning(
                "shadow mode: request %s of DAG %s runs although the policy refused it (%s)",
                call.request_id,
                principal.dag,
                ", ".join(map(reason_shown, decision.reasons)),
            )
        return principal, statement, analysis, decision, preflight.writes

    def _execution(
        self,
        call: Call,
        principal: Principal,
        statement: Statement,
        analysis: Analysis,
        decision: Decision,
        access_mode: AccessMode,
    ) -> Execution:
        metadata = neo4j_metadata(
            principal, call.request_id, decision.decision_id, call.trace.traceparent()
        )
        if statement.metadata:  # the caller's (a Bolt RUN's), under the gateway's keys
            metadata = {**passed_on(statement.metadata), **metadata}
        return Execution(
            database=call.database,
            statement=statement.text,
            parameters=statement.parameters,
            access_mode=access_mode,
            timeout_s=min(
                decision.timeout_s or self._default_timeout_s, statement.timeout_s or float("inf")
            ),
            metadata=metadata,
            bookmarks=statement.bookmarks,
            row_limit=decision.row_limit,
            row_limit_action=decision.row_limit_action,
            commits_in_batches=analysis.commits_in_batches,
        )

    async def _analyse(
        self, database: str, text: str, preflight: Preflight, trail: Trail, step: Step
    ) -> Analysis:
        """The statement's analysis. Neo4j's planning errors tell what exists: one a DAG must not
        learn from is refused as the policy refuses what exists (:mod:`proxy.gateway.planning`)."""
        try:
            return await self._analyzer.analyse(database, text, step)
        except (Neo4jClientError, DatabaseNotFound) as error:
            refused = planning_refusal(error, database, preflight)
            if refused is None:
                raise
            trail.decided(replace(preflight.decision, allow=False, reasons=(refused,)))
            raise PolicyDenied([refused]) from error

    async def _decide(
        self,
        principal: Principal,
        database: str,
        statement: Statement,
        shown: str,
        analysis: Analysis,
    ) -> Decision:
        """The policy's decision. Its input holds the statement as recorded (``shown``: no
        password literal leaves the gateway but to Neo4j)."""
        document = policy_input(
            principal,
            database=database,
            statement=shown,
            parameter_names=list(statement.parameters),
            requested_access_mode=statement.access_mode,
            analysis=analysis,
        )
        return await self._policy.decide(document)


def _access_mode(
    analysis: Analysis, decision: Decision, requested: AccessMode | None
) -> AccessMode:
    """The most restrictive of what Neo4j, the policy and the caller said."""
    if analysis.is_read_only or decision.access_mode == "READ" or requested == "READ":
        return "READ"
    return "WRITE"
