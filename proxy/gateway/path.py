"""The request path of one statement, whichever front door it came through.

1. **receive**: a front door (``proxy/api/query.py``) translates its wire format into a
   :class:`~proxy.gateway.call.Call`;
2. **authenticate** the call's credential into an identity, and **resolve** the DAG it acts as;
3. **read** the statement (only now: a caller nobody identified gets nothing parsed);
4. **analyse** it with Neo4j's own ``EXPLAIN`` (cached);
5. **decide** on it with the policy (cached per revision);
6. **hold a credential**: the DAG's Neo4j login, for as long as the statement runs;
7. **record ahead**: the decision record is durable before anything runs;
8. **execute** it; its rows stream to the front door inside :meth:`Gateway.run`'s block;
9. **record the outcome** when the block ends (:mod:`proxy.gateway.trail`).

A policy check that needs no plan (deciding on the principal and the statement's text) slots in
between steps 3 and 4. A front door holding an explicit transaction open passes it as the
``upstream`` of each statement, which then skips step 6 and runs in that transaction; steps
2 to 5, 7 and 9 are the same for it as for any other statement.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace

from proxy.analysis import Analysis
from proxy.audit.checkpoint import ParameterDigester
from proxy.clock import Clock
from proxy.errors import CypherGateError, Neo4jClientError, PolicyDenied
from proxy.gateway.call import Call, Statement
from proxy.gateway.seams import (
    AuditLog,
    CallerAuthenticator,
    CredentialBroker,
    PolicyDecider,
    StatementAnalyzer,
    StatementExecutor,
    Upstream,
)
from proxy.gateway.trail import Trail
from proxy.metrics import Metrics
from proxy.neo4j.logins import Login
from proxy.policy import Decision, Preflight, policy_input, preflight_input
from proxy.principal import DagResolver, Principal
from proxy.statement import AccessMode, Execution, RowStream

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
        executor: StatementExecutor,
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
        self._credentials = credentials
        self._executor = executor
        self._audit = audit
        self._clock = clock
        self._default_timeout_s = default_timeout_s
        self._digester = digester or ParameterDigester(None)
        self._metrics = metrics or Metrics()

    @contextlib.asynccontextmanager
    async def run(
        self, call: Call, *, upstream: Upstream | None = None
    ) -> AsyncIterator[RowStream]:
        """Take one statement down the request path (see the module docstring).

        Its rows stream inside the block; when the block ends the outcome is recorded. Every
        refusal or failure is a :class:`CypherGateError`, recorded once. ``upstream``: an
        explicit transaction a front door holds open; by default the statement runs in an
        auto-commit transaction as the DAG's credential, held for it alone.
        """
        trail = Trail(call, clock=self._clock, audit=self._audit, metrics=self._metrics)
        async with trail.recording():
            identity = await self._authenticator.authenticate(call.authorization)
            trail.identified(identity)
            principal = self._resolver.resolve(identity, call.headers)
            trail.acting_as(principal)
            statement = await call.statement()
            trail.asked(statement, self._digester.digests(statement.parameters))
            preflight = await self._policy.preflight(
                preflight_input(principal, database=call.database)
            )
            if not preflight.decision.allow:
                trail.decided(preflight.decision)
                raise PolicyDenied(list(preflight.decision.reasons))
            analysis = await self._analyse(call.database, statement.text, preflight, trail)
            trail.analysed(analysis)
            decision = await self._decide(principal, call.database, statement, analysis)
            trail.decided(decision)
            if not decision.enforced_allow:
                raise PolicyDenied(list(decision.reasons))
            if not decision.allow:
                log.warning(
                    "shadow mode: request %s of DAG %s runs although the policy refused it (%s)",
                    call.request_id,
                    principal.dag,
                    ", ".join(decision.reasons),
                )
            execution = Execution(
                database=call.database,
                statement=statement.text,
                parameters=statement.parameters,
                access_mode=_access_mode(analysis, decision, statement.access_mode),
                timeout_s=decision.timeout_s or self._default_timeout_s,
                metadata=_metadata(principal, call.request_id, decision.decision_id),
                bookmarks=statement.bookmarks,
                row_limit=decision.row_limit,
                row_limit_action=decision.row_limit_action,
            )
            trail.access_mode = execution.access_mode
            # A front door's transaction is held by the front door, for more than this statement.
            held = self._autocommit(principal.dag) if upstream is None else nullcontext(upstream)
            async with held as place:
                trail.credential = {"user": place.user}
                await trail.ahead()  # if this cannot be written, AuditUnavailable ends it here
                async with place.run(execution) as rows:
                    yield rows
                    trail.finished(await rows.summary())

    async def identify(self, call: Call) -> Principal:
        """Who a front door's caller is and which DAG it acts as, before any statement (Bolt's
        ``LOGON``). A refusal is recorded as on the request path; an acceptance is not (each
        statement that follows is authenticated and recorded again)."""
        try:
            identity = await self._authenticator.authenticate(call.authorization)
            return self._resolver.resolve(identity, call.headers)
        except CypherGateError as error:
            await self.refuse(call, error)
            raise

    async def refuse(self, call: Call, error: CypherGateError) -> None:
        """Record a call a front door turns away (with its caller, if it authenticates)."""
        trail = Trail(call, clock=self._clock, audit=self._audit, metrics=self._metrics)
        with contextlib.suppress(CypherGateError):
            trail.identified(await self._authenticator.authenticate(call.authorization))
        await trail.refused(error)

    async def _analyse(
        self, database: str, text: str, preflight: Preflight, trail: Trail
    ) -> Analysis:
        """The statement's analysis. Neo4j's planning errors tell what exists: a DAG that may call
        no procedure (or user-defined function) gets the same refusal for an unknown one as for
        a known one."""
        try:
            return await self._analyzer.analyse(database, text)
        except Neo4jClientError as error:
            reason = _unknown_call(error)
            if reason == "procedure" and not preflight.procedures:
                refused = "procedure_not_granted:*"
            elif reason == "function" and not preflight.functions:
                refused = "function_not_granted:*"
            else:
                raise
            trail.decided(replace(preflight.decision, allow=False, reasons=(refused,)))
            raise PolicyDenied([refused]) from error

    async def _decide(
        self, principal: Principal, database: str, statement: Statement, analysis: Analysis
    ) -> Decision:
        document = policy_input(
            principal,
            database=database,
            statement=statement.text,
            parameter_names=list(statement.parameters),
            requested_access_mode=statement.access_mode,
            analysis=analysis,
        )
        return await self._policy.decide(document)

    @contextlib.asynccontextmanager
    async def _autocommit(self, dag: str) -> AsyncIterator[Upstream]:
        """An auto-commit transaction as ``dag``'s credential, held until the block ends."""
        async with self._credentials.hold(dag) as login:
            yield _AutoCommit(self._executor, login)


@dataclass(frozen=True, slots=True)
class _AutoCommit:
    """An :class:`Upstream` running each statement in an auto-commit transaction."""

    executor: StatementExecutor
    login: Login

    @property
    def user(self) -> str:
        return self.login.user

    def run(self, execution: Execution) -> AbstractAsyncContextManager[RowStream]:
        return self.executor.run(execution, self.login)


_UNKNOWN_FUNCTION = re.compile(r"Unknown function '([^']*)'")


def _unknown_call(error: Neo4jClientError) -> str | None:
    """``procedure`` or ``function`` when Neo4j could not plan a call of an unknown one (a
    built-in function name, without a namespace, is not a user-defined one)."""
    if error.code == "Neo.ClientError.Procedure.ProcedureNotFound":
        return "procedure"
    match = _UNKNOWN_FUNCTION.search(error.message)
    if error.code == "Neo.ClientError.Statement.SyntaxError" and match and "." in match.group(1):
        return "function"
    return None


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


def _access_mode(
    analysis: Analysis, decision: Decision, requested: AccessMode | None
) -> AccessMode:
    """The most restrictive of what Neo4j, the policy and the caller said."""
    if analysis.is_read_only or decision.access_mode == "READ" or requested == "READ":
        return "READ"
    return "WRITE"
