"""The test fakes, one each for the Protocol seams of the use cases and the Neo4j wing.

Each satisfies the Protocol it stands for, and mypy checks that (the block at the end), so a fake
that drifts from its seam fails CI. Unit tests use these; every capability is also tested
against the real Neo4j, OPA, provider and moto.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from openlineage.client.event_v2 import RunEvent
from openlineage.client.transport import Transport

from proxy.analysis import Analysis
from proxy.app import Services
from proxy.audit.checkpoint import Checkpoint
from proxy.audit.reader import RecordFilter
from proxy.audit.record import AuditEvent, ChainProblem, Receipt
from proxy.auth import SchemeRouter
from proxy.errors import (
    AuditUnavailable,
    AuthenticationFailed,
    CypherGateError,
    Neo4jClientError,
    PolicyUnavailable,
    RowLimitExceeded,
)
from proxy.gateway.path import Gateway
from proxy.gateway.seams import (
    AuditLog,
    CredentialBroker,
    GraphExecutor,
    PolicyDecider,
    StatementAnalyzer,
)
from proxy.metrics import Metrics
from proxy.neo4j.logins import Login
from proxy.neo4j.secret_sources import Credential
from proxy.plan import PlanFacts
from proxy.policy import AccessDecision, Decision, Preflight
from proxy.principal import DagResolver, Identity
from proxy.statement import JSON, AccessMode, Constraint, Execution, Opening, Plan, Summary
from proxy.tracing import NO_TRACING, OFF, Step, Tracing

READER = Identity(method="oidc", issuer="https://issuer.test", subject="s", asserted_dag="etl")
# Another workload of the same DAG.
NEIGHBOUR = Identity(method="oidc", issuer="https://issuer.test", subject="t", asserted_dag="etl")
# A verified identity bound to no DAG.
STRANGER = Identity(method="oidc", issuer="https://issuer.test", subject="u")


class FakeAuth:
    """An authenticator of one scheme: ``good`` is :data:`READER`, ``neighbour`` is
    :data:`NEIGHBOUR`, ``stranger`` :data:`STRANGER`, anything else is refused."""

    async def authenticate(self, credentials: str) -> Identity:
        if credentials == "good":
            return READER
        if credentials == "neighbour":
            return NEIGHBOUR
        if credentials == "stranger":
            return STRANGER
        raise AuthenticationFailed(reason="bad_token")

    async def check_ready(self) -> None:
        return None


@dataclass
class FakeAnalyzer:
    """Neo4j's EXPLAIN as the request path sees it: a statement with CREATE writes ``:N``."""

    analysed: list[str] = field(default_factory=list)
    schema_changes: int = 0

    def schema_changed(self) -> None:
        self.schema_changes += 1

    async def analyse(self, database: str, statement: str, step: Step = OFF) -> Analysis:
        self.analysed.append(f"{database}: {statement}")
        if "CALL missing." in statement:
            raise Neo4jClientError(
                "Neo.ClientError.Procedure.ProcedureNotFound", "There is no procedure ..."
            )
        if "missing.fn(" in statement:
            raise Neo4jClientError(
                "Neo.ClientError.Statement.SyntaxError", "Unknown function 'missing.fn' (line 1)"
            )
        if "CREATE" in statement:
            return Analysis(query_type="w", facts=PlanFacts(labels_written=frozenset({"N"})))
        return Analysis(query_type="r", facts=PlanFacts())


@dataclass
class FakePlanner:
    """Neo4j planning every statement as a read that touches nothing."""

    planned: list[str] = field(default_factory=list)

    async def plan(self, database: str, statement: str) -> Plan:
        self.planned.append(f"{database}: {statement}")
        return Plan(query_type="r", operators={"operatorType": "ProduceResults@neo4j"})

    async def constraints(self, database: str) -> tuple[Constraint, ...]:
        return ()

    async def procedure_modes(self, database: str) -> dict[str, str]:
        return {}


@dataclass
class FakePolicy:
    """A policy that allows, refuses (``write_not_granted``), shadows or fails, as told."""

    allow: bool = True
    fail: bool = False
    # The decision's access mode: READ for a statement that only reads (as the real policy).
    access_mode: AccessMode = "WRITE"
    shadow: bool = False
    row_limit: int | None = None
    timeout_s: float = 5.0  # the decision's timeout, Neo4j's for a transaction begun with it
    inputs: list[dict[str, Any]] = field(default_factory=list)
    # The preflight: whether the DAG may use the database, call procedures and functions, and
    # write at all.
    database_granted: bool = True
    calls_granted: bool = False
    may_write: bool = True
    preflights: list[dict[str, Any]] = field(default_factory=list)

    async def preflight(self, document: dict[str, Any]) -> Preflight:
        self.preflights.append(document)
        if self.fail:
            raise PolicyUnavailable(reason="opa_error:test")
        decision = Decision(
            allow=self.database_granted,
            reasons=() if self.database_granted else ("dag_not_granted",),
            decision_id="p-1",
            access_mode="READ",
            timeout_s=None,
        )
        return Preflight(
            decision,
            procedures=self.calls_granted,
            functions=self.calls_granted,
            writes=self.may_write,
        )

    async def decide(self, document: dict[str, Any]) -> Decision:
        self.inputs.append(document)
        if self.fail:
            raise PolicyUnavailable(reason="opa_error:test")
        return Decision(
            allow=self.allow,
            reasons=() if self.allow else ("write_not_granted",),
            decision_id=f"d-{len(self.inputs)}",
            access_mode=self.access_mode,
            timeout_s=self.timeout_s,
            shadow=self.shadow,
            row_limit=self.row_limit,
            revision="rev-1" if self.shadow else None,
        )


@dataclass
class FakeAuditAccess:
    """The audit-access policy: reviewers are the identities it lists."""

    reviewers: list[Identity] = field(default_factory=list)

    async def authorize_audit_read(self, identity: Identity) -> AccessDecision:
        if identity in self.reviewers:
            return AccessDecision(allow=True, reasons=())
        return AccessDecision(allow=False, reasons=("not_a_reviewer",))


@dataclass
class FakeBroker:
    """Hands every DAG the same user, or fails as told (no credential: nothing may run)."""

    user: str = "cyphergate"
    fail_with: CypherGateError | None = None
    held: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def hold(self, dag: str) -> AsyncIterator[Login]:
        if self.fail_with is not None:
            raise self.fail_with
        self.held.append(dag)
        try:
            yield Login(user=self.user)
        finally:
            self.released.append(dag)


class FakeRows:
    """Rows as a :class:`~proxy.statement.RowStream`, with the row limit applied as Neo4j's
    executor applies it."""

    def __init__(self, fields: list[str], values: list[list[JSON]], execution: Execution) -> None:
        self._fields = fields
        self._values = iter(values)
        self._execution = execution
        self._count = 0
        self._truncated = False
        self._done = False

    @property
    def fields(self) -> list[str]:
        return self._fields

    def __aiter__(self) -> FakeRows:
        return self

    async def __anext__(self) -> list[JSON]:
        row = None if self._done else next(self._values, None)
        if row is None:
            self._done = True
            raise StopAsyncIteration
        limit = self._execution.row_limit
        if self._count == limit:
            self._done = True
            if self._execution.row_limit_action == "error":
                raise RowLimitExceeded(self._count)
            self._truncated = True
            raise StopAsyncIteration
        self._count += 1
        return row

    async def summary(self) -> Summary:
        async for _ in self:
            pass
        return Summary(rows=self._count, counters={}, bookmarks=[], truncated=self._truncated)

    def committed(self) -> Summary | None:
        return None  # nothing ran


@dataclass
class FakeExecutor:
    """Runs nothing: answers every statement with ``rows`` and records what it was asked.

    ``fail_with`` fails every statement; ``fail_on`` (a piece of text) those that contain it, as
    Neo4j would (``Neo.ClientError.Statement.ArithmeticError``). Explicit transactions it begins
    are in ``transactions``; ``begin_fails`` refuses to begin one.
    """

    rows: list[list[JSON]] = field(default_factory=lambda: [[1]])
    ran: list[Execution] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    fail_with: Exception | None = None
    fail_on: str | None = None
    begin_fails: CypherGateError | None = None
    transactions: list[FakeUpstream] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution, login: Login) -> AsyncIterator[FakeRows]:
        self.ran.append(execution)
        self.users.append(login.user)
        self.fail(execution)
        yield FakeRows(["x"], self.rows, execution)

    async def begin(self, opening: Opening, login: Login) -> FakeUpstream:
        if self.begin_fails is not None:
            raise self.begin_fails
        upstream = FakeUpstream(self, opening, login.user)
        self.transactions.append(upstream)
        return upstream

    def fail(self, execution: Execution) -> None:
        """Raise as Neo4j would if this statement is to fail."""
        if self.fail_with is not None:
            raise self.fail_with
        if self.fail_on is not None and self.fail_on in execution.statement:
            raise Neo4jClientError("Neo.ClientError.Statement.ArithmeticError", "/ by zero")


@dataclass
class FakeUpstream:
    """An explicit transaction its :class:`FakeExecutor` began: records what ran in it and how
    it ended (``commit``, ``rollback``); ``commit_fails`` refuses the commit."""

    executor: FakeExecutor
    opening: Opening
    user: str
    ran: list[Execution] = field(default_factory=list)
    ended: str | None = None
    closed: bool = False
    commit_fails: CypherGateError | None = None

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution) -> AsyncIterator[FakeRows]:
        assert self.ended is None and not self.closed, "a statement in an ended transaction"
        self.ran.append(execution)
        self.executor.fail(execution)
        yield FakeRows(["x"], self.executor.rows, execution)

    async def commit(self) -> list[str]:
        if self.commit_fails is not None:
            self.ended = "rollback"  # Neo4j rolled it back
            raise self.commit_fails
        self.ended = "commit"
        return ["FB:committed"]

    async def rollback(self) -> None:
        self.ended = self.ended or "rollback"

    async def close(self) -> None:
        self.closed = True


class StuckExecutor(FakeExecutor):
    """Neo4j takes its time over every statement: ``running`` is set once one has been sent."""

    def __init__(self) -> None:
        super().__init__()
        self.running = asyncio.Event()

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution, login: Login) -> AsyncIterator[FakeRows]:
        self.running.set()
        await asyncio.Event().wait()
        yield FakeRows([], [], execution)  # never reached

    async def begin(self, opening: Opening, login: Login) -> FakeUpstream:
        upstream = await super().begin(opening, login)
        stuck = self

        @contextlib.asynccontextmanager
        async def run(execution: Execution) -> AsyncIterator[FakeRows]:
            upstream.ran.append(execution)
            stuck.running.set()
            await asyncio.Event().wait()
            yield FakeRows([], [], execution)  # never reached

        upstream.run = run  # type: ignore[method-assign]
        return upstream


@dataclass
class FakeAudit:
    """An audit log in a list, or one that cannot be written."""

    events: list[AuditEvent] = field(default_factory=list)
    broken: bool = False
    # After-the-fact events kept while broken (the real log writes them late).
    late: list[AuditEvent] = field(default_factory=list)

    async def append(self, event: AuditEvent) -> Receipt:
        if self.broken:
            raise AuditUnavailable(reason="disk_full")
        self.events.append(event)
        return Receipt(seq=len(self.events), hash="0" * 64)

    async def append_after(self, event: AuditEvent) -> Receipt | None:
        if self.broken:
            self.late.append(event)
            return None
        return await self.append(event)

    async def check_ready(self) -> None:
        return None


@dataclass
class FakeLineage:
    """A lineage sink that keeps what it is told."""

    ended_records: list[tuple[AuditEvent, dict[str, str]]] = field(default_factory=list)

    def ended(self, record: AuditEvent, headers: Mapping[str, str]) -> None:
        self.ended_records.append((record, dict(headers)))


class FakeTransport(Transport):
    """An OpenLineage transport that keeps the events it is given, or fails (``broken``), or
    holds each event until ``release`` is set (a backend that is slow)."""

    kind = "fake"

    def __init__(self, *, broken: bool = False) -> None:
        self.events: list[RunEvent] = []
        self.broken = broken
        self.release = threading.Event()
        self.release.set()
        self.closed = False

    def emit(self, event: Any) -> None:
        self.release.wait(10)
        if self.broken:
            raise ConnectionError("http://user:pw@lineage.test/ refused")
        self.events.append(event)

    def close(self, timeout: float = -1) -> bool:
        del timeout
        self.closed = True
        return True


class FakeReading:
    """An empty audit log of one chain, as the reviewers' use case reads it."""

    async def chains(self) -> list[str]:
        return ["gateway"]

    async def query(self, flt: RecordFilter, chain: str | None = None) -> list[dict[str, Any]]:
        return []

    async def proof(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
        return None

    async def record(self, seq: int, chain: str | None = None) -> dict[str, Any] | None:
        return None

    async def head(
        self, chain: str | None = None
    ) -> tuple[tuple[int, str] | None, list[Checkpoint]]:
        return None, []

    async def verify(
        self,
        public_key: Ed25519PublicKey | None,
        chain: str | None = None,
        *,
        sealed_before: str | None = None,
    ) -> tuple[int, ChainProblem | None]:
        return 0, None

    async def denials_by_dag(
        self, since: str, chain: str | None = None
    ) -> dict[str | None, dict[str, int]]:
        return {}


class FakeSource:
    """A secret store in memory: a current credential and, perhaps, a staged one."""

    def __init__(self, current: Credential, pending: Credential | None = None) -> None:
        self.value, self.staged = current, pending

    def invalidate(self) -> None:
        return None

    async def check_ready(self) -> str | None:
        return None

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        yield

    async def current(self) -> Credential:
        return self.value

    async def pending(self) -> tuple[str, Credential] | None:
        return None if self.staged is None else ("v2", self.staged)

    async def stage(self, credential: Credential) -> str:
        self.staged = credential
        return "v2"

    async def promote(self, version: str) -> None:
        del version
        if self.staged is not None:
            self.value, self.staged = self.staged, None

    async def discard(self, version: str) -> None:
        del version
        self.staged = None


def fake_gateway(
    *,
    resolver: DagResolver | None = None,
    analyzer: StatementAnalyzer | None = None,
    policy: PolicyDecider | None = None,
    credentials: CredentialBroker | None = None,
    executor: GraphExecutor | None = None,
    audit: AuditLog | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing = NO_TRACING,
    lineage_namespace: str | None = None,
) -> Gateway:
    """The request path with a fake at each seam not given (callers presenting ``Bearer``
    tokens :class:`FakeAuth` knows, no DAG bindings), its clock stopped at 1,700,000,000 and a
    statement's timeout 30 s."""
    return Gateway(
        authenticator=SchemeRouter({"Bearer": FakeAuth()}),
        resolver=DagResolver([]) if resolver is None else resolver,
        analyzer=FakeAnalyzer() if analyzer is None else analyzer,
        policy=FakePolicy() if policy is None else policy,
        credentials=FakeBroker() if credentials is None else credentials,
        executor=FakeExecutor() if executor is None else executor,
        audit=FakeAudit() if audit is None else audit,
        clock=lambda: 1_700_000_000.0,
        default_timeout_s=30.0,
        metrics=metrics,
        tracing=tracing,
        lineage_namespace=lineage_namespace,
    )


def fake_services() -> Services:
    """Every collaborator of the application a fake, for ``create_app(settings, services)``."""
    executor = FakeExecutor()

    async def ready() -> None:
        return None

    async def describe() -> dict[str, str]:
        return {"version": "5.26.0", "edition": "community"}

    return Services(
        authenticator=SchemeRouter({"Bearer": FakeAuth()}),
        policy=FakePolicy(),
        audit_access=FakeAuditAccess(),
        planner=FakePlanner(),
        credentials=FakeBroker(),
        executor=executor,
        audit=FakeAudit(),
        reading=FakeReading(),
        readiness={"neo4j": ready},
        describe=describe,
        auth_schemes=["Bearer"],
    )


if TYPE_CHECKING:  # mypy checks each fake against the Protocol it stands for
    from proxy.analysis import Planner
    from proxy.auth import Authenticator
    from proxy.gateway.seams import (
        AuditAccessPolicy,
        AuditReading,
        LineageSink,
        UpstreamTransaction,
    )
    from proxy.neo4j.secret_sources import SecretSource
    from proxy.statement import RowStream

    _authenticator: Authenticator = FakeAuth()
    _analyzer: StatementAnalyzer = FakeAnalyzer()
    _planner: Planner = FakePlanner()
    _policy: PolicyDecider = FakePolicy()
    _access: AuditAccessPolicy = FakeAuditAccess()
    _broker: CredentialBroker = FakeBroker()
    _executor: GraphExecutor = FakeExecutor()
    _upstream: UpstreamTransaction = FakeUpstream(
        FakeExecutor(), Opening("db", "READ", 1.0, {}), "u"
    )
    _rows: RowStream = FakeRows([], [], Execution("db", "RETURN 1", {}, "READ", 1.0, {}))
    _audit: AuditLog = FakeAudit()
    _reading: AuditReading = FakeReading()
    _source: SecretSource = FakeSource(Credential("u", "p"))
    _lineage: LineageSink = FakeLineage()
