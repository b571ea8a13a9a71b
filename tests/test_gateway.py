"""The request path with fakes at its Protocol seams: the fail-closed rules, one by one.

These prove the ordering guarantees (nothing runs unless authenticated, decided and recorded);
the same paths are exercised against the real services in test_request_path.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from proxy.analysis import Analysis, Analyzer
from proxy.errors import (
    AuditUnavailable,
    AuthenticationFailed,
    CypherGateError,
    GraphUnavailable,
    PolicyDenied,
    PolicyUnavailable,
    RowLimitExceeded,
    SecretStoreUnavailable,
)
from proxy.gateway.call import MAX_PARAMETERS, MAX_STATEMENT_CHARACTERS, Call, Statement
from proxy.gateway.path import Gateway
from proxy.metrics import Metrics
from proxy.neo4j.logins import Login
from proxy.plan import PlanFacts
from proxy.statement import JSON, Execution, Summary
from tests.fakes import (
    FakeAnalyzer,
    FakeAudit,
    FakeBroker,
    FakeExecutor,
    FakePolicy,
    FakeRows,
    fake_gateway,
)


@dataclass
class Rig:
    """The request path with a fake at each of its seams."""

    gateway: Gateway
    analyzer: FakeAnalyzer
    executor: FakeExecutor
    policy: FakePolicy
    audit: FakeAudit
    broker: FakeBroker


def make(
    policy: FakePolicy | None = None,
    audit: FakeAudit | None = None,
    metrics: Metrics | None = None,
    broker: FakeBroker | None = None,
) -> Rig:
    analyzer, executor = FakeAnalyzer(), FakeExecutor()
    policy, audit, broker = policy or FakePolicy(), audit or FakeAudit(), broker or FakeBroker()
    gateway = fake_gateway(
        analyzer=analyzer,
        policy=policy,
        credentials=broker,
        executor=executor,
        audit=audit,
        metrics=metrics,
    )
    return Rig(gateway, analyzer, executor, policy, audit, broker)


def call(statement: str, authorization: str | None = "Bearer good") -> Call:
    async def read() -> Statement:
        return Statement(text=statement, parameters={"secret": "hunter2"})

    return Call(
        request_id="r-1",
        database="neo4j",
        authorization=authorization,
        client=None,
        headers={"x-cyphergate-task": "load", "x-cyphergate-try": "2"},
        statement=read,
    )


def run(gateway: Gateway, c: Call) -> tuple[list[list[JSON]], Summary]:
    """The call down the request path, its rows read as a front door reads them."""

    async def go() -> tuple[list[list[JSON]], Summary]:
        async with gateway.run(c) as rows:
            values = [row async for row in rows]
            return values, await rows.summary()

    return asyncio.run(go())


def test_allowed_request_is_recorded_before_it_runs_and_after() -> None:
    rig = make()
    audit = rig.audit
    assert run(rig.gateway, call("RETURN 1")) == ([[1]], Summary(rows=1, counters={}, bookmarks=[]))
    assert [e.event for e in audit.events] == ["decision", "outcome"]
    assert audit.events[0].status is None and audit.events[1].status == 202
    assert audit.events[0].credential == audit.events[1].credential == {"user": "cyphergate"}
    assert audit.events[1].rows == 1
    (execution,) = rig.executor.ran
    assert execution.access_mode == "READ"  # read-only statement, whatever the policy allows
    assert execution.metadata == {
        "dag_id": "etl",
        "task_id": "load",
        "try_number": 2,
        "request_id": "r-1",
        "decision_id": "d-1",
    }
    assert "hunter2" not in repr(audit.events)


def test_unauthenticated_request_touches_nothing() -> None:
    rig = make()
    with pytest.raises(AuthenticationFailed):
        run(rig.gateway, call("RETURN 1", authorization="Bearer forged"))
    assert rig.analyzer.analysed == [] and rig.executor.ran == [] and rig.policy.inputs == []
    assert rig.broker.held == []
    (event,) = rig.audit.events
    assert event.status == 401 and event.error == {
        "code": "Neo.ClientError.Security.Unauthorized",
        "reason": "bad_token",
    }


def test_denied_request_does_not_run() -> None:
    rig = make(policy=FakePolicy(allow=False))
    with pytest.raises(PolicyDenied) as denied:
        run(rig.gateway, call("CREATE (:X)"))
    assert denied.value.reasons == ["write_not_granted"]
    assert rig.executor.ran == [] and rig.broker.held == []
    (event,) = rig.audit.events
    assert event.status == 403 and event.decision == {
        "allow": False,
        "reasons": ["write_not_granted"],
        "decision_id": "d-1",
        "policy_revision": None,
    }


def test_policy_failure_fails_closed() -> None:
    rig = make(policy=FakePolicy(fail=True))
    with pytest.raises(PolicyUnavailable):
        run(rig.gateway, call("CREATE (:X)"))
    assert rig.executor.ran == []
    assert rig.audit.events[0].status == 503


def test_unwritable_audit_log_means_nothing_runs() -> None:
    rig = make(audit=FakeAudit(broken=True))
    with pytest.raises(AuditUnavailable) as error:
        run(rig.gateway, call("CREATE (:X)"))
    assert error.value.status == 503
    assert rig.executor.ran == []


def test_policy_input_matches_the_documented_schema() -> None:
    from pathlib import Path

    import jsonschema

    schema = json.loads(
        (Path(__file__).resolve().parent.parent / "policies/schemas/input.json").read_text()
    )
    rig = make()
    run(rig.gateway, call("RETURN 1"))
    (document,) = rig.policy.inputs
    jsonschema.validate(document, schema)  # additionalProperties: false at every level
    assert "hunter2" not in json.dumps(document)


def test_internal_errors_are_audited_and_hidden() -> None:
    rig = make()
    rig.executor.fail_with = RuntimeError("neo4j: connection string with password=hunter2")
    with pytest.raises(CypherGateError) as error:
        run(rig.gateway, call("RETURN 1"))
    assert "hunter2" not in error.value.message
    assert rig.audit.events[-1].event == "outcome" and rig.audit.events[-1].status == 500


def test_shadow_mode_records_the_refusal_and_runs() -> None:
    rig = make(policy=FakePolicy(allow=False, shadow=True, row_limit=7))
    run(rig.gateway, call("CREATE (:X)"))
    (execution,) = rig.executor.ran
    assert execution.row_limit == 7 and execution.row_limit_action == "error"
    decision, outcome = rig.audit.events
    assert decision.decision == {
        "allow": True,
        "reasons": ["write_not_granted"],
        "decision_id": "d-1",
        "policy_revision": "rev-1",
        "constraints": {"row_limit": 7, "row_limit_action": "error", "timeout_ms": 5000},
        "shadow_denied": True,
    }
    # It ran, but the policy refused it: reviewers find it among the denials.
    assert decision.verdict == "deny" and outcome.status == 202
    assert decision.analysis is not None and decision.analysis["labels"]["write"] == ["N"]


def test_every_request_is_counted_once_for_metrics() -> None:
    """Allowed, refused, unauthenticated, failed-closed and unrecorded requests: one count each,
    by verdict and status, and refusal reasons by kind."""
    metrics = Metrics()
    cases: list[tuple[FakePolicy, FakeAudit, str, str | None]] = [
        (FakePolicy(), FakeAudit(), "RETURN 1", "Bearer good"),
        (FakePolicy(allow=False), FakeAudit(), "CREATE (:X)", "Bearer good"),
        (FakePolicy(), FakeAudit(), "RETURN 1", "Bearer forged"),
        (FakePolicy(fail=True), FakeAudit(), "RETURN 1", "Bearer good"),
        (FakePolicy(shadow=True, allow=False), FakeAudit(), "CREATE (:X)", "Bearer good"),
        (FakePolicy(), FakeAudit(broken=True), "RETURN 1", "Bearer good"),
    ]
    for policy, audit, statement, authorization in cases:
        rig = make(policy=policy, audit=audit, metrics=metrics)
        with contextlib.suppress(CypherGateError):
            run(rig.gateway, call(statement, authorization=authorization))

    def sample(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(name, labels)

    counted = [
        s.value
        for family in metrics.registry.collect()
        for s in family.samples
        if s.name == "cyphergate_requests_total"
    ]
    assert sum(counted) == len(cases)
    assert sample("cyphergate_requests_total", verdict="allow", status="202") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="403") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="401") == 1
    # Shadow mode: ran (202) but counted as a refusal, as the audit log shows it.
    assert sample("cyphergate_requests_total", verdict="deny", status="202") == 1
    assert sample("cyphergate_requests_total", verdict="deny", status="503") == 1  # no OPA
    # Allowed, but the audit log could not take the record ahead of running: refused.
    assert sample("cyphergate_requests_total", verdict="allow", status="503") == 1
    assert sample("cyphergate_denials_total", reason="write_not_granted") == 2
    assert sample("cyphergate_denials_total", reason="bad_token") == 1
    assert sample("cyphergate_denials_total", reason="opa_error") == 1
    assert sample("cyphergate_audit_write_failures_total", event="decision") == 1
    assert sample("cyphergate_request_duration_seconds_count", verdict="deny") == 4
    assert b"hunter2" not in metrics.render() and b"etl" not in metrics.render()


def test_a_secret_store_failure_is_its_own_503_and_recorded() -> None:
    """The store of the Neo4j credential is away: not "Neo4j is unavailable", and nothing ran."""
    store_down = SecretStoreUnavailable(reason="secret_store:aws_secrets_manager:ConnectTimeout")
    rig = make(broker=FakeBroker(fail_with=store_down))
    with pytest.raises(SecretStoreUnavailable) as error:
        run(rig.gateway, call("RETURN 1"))
    assert error.value.status == 503
    assert error.value.code == "Neo.TransientError.General.SecretStoreUnavailable"
    assert rig.executor.ran == []
    (event,) = rig.audit.events  # the decision, with its final status, and no outcome
    assert event.event == "decision" and event.status == 503 and event.access_mode == "READ"
    assert event.error == {
        "code": "Neo.TransientError.General.SecretStoreUnavailable",
        "reason": "secret_store:aws_secrets_manager:ConnectTimeout",
    }


def test_rows_stream_before_the_outcome_is_recorded() -> None:
    rig = make()
    rig.executor.rows = [[1], [2], [3]]

    async def go() -> list[str]:
        seen = []
        async with rig.gateway.run(call("RETURN 1")) as rows:
            async for row in rows:
                seen.append(f"row {row[0]} after {[e.event for e in rig.audit.events]}")
        return seen

    assert asyncio.run(go()) == [f"row {n} after ['decision']" for n in (1, 2, 3)]
    _, outcome = rig.audit.events
    assert outcome.event == "outcome" and outcome.status == 202 and outcome.rows == 3


@pytest.mark.parametrize(
    ("failure", "status"),
    [(RowLimitExceeded(2), 400), (GraphUnavailable(reason="SessionExpired"), 503)],
)
def test_a_failure_while_rows_stream_is_recorded_once(
    failure: CypherGateError, status: int
) -> None:
    rig = make(policy=FakePolicy(row_limit=2))
    rig.executor.rows = [[1], [2], [3]]

    async def go() -> None:
        async with rig.gateway.run(call("RETURN 1")) as rows:
            async for row in rows:
                if isinstance(failure, GraphUnavailable) and row == [2]:
                    raise failure  # as the driver's stream would, mid-way

    with pytest.raises(type(failure)):
        asyncio.run(go())
    decision, outcome = rig.audit.events
    assert decision.status is None and outcome.status == status
    assert outcome.error is not None and outcome.error["code"] == failure.code
    assert outcome.rows is None and outcome.counters is None


def test_a_front_door_that_fails_mid_answer_leaves_one_outcome() -> None:
    rig = make()

    async def go() -> None:
        async with rig.gateway.run(call("RETURN 1")) as rows:
            await rows.summary()
            raise ConnectionResetError("the client went away")

    with pytest.raises(CypherGateError) as error:
        asyncio.run(go())
    assert error.value.reason == "internal:ConnectionResetError"
    assert [(e.event, e.status) for e in rig.audit.events] == [("decision", None), ("outcome", 500)]


def test_a_refused_call_is_recorded_with_its_caller() -> None:
    rig = make()
    error = CypherGateError(reason="turned_away")
    asyncio.run(rig.gateway.refuse(call("RETURN 1"), error))
    (event,) = rig.audit.events
    assert event.status == 500 and event.principal == {
        "method": "oidc",
        "issuer": "https://issuer.test",
        "subject": "s",
    }
    assert rig.analyzer.analysed == [] and rig.executor.ran == []


def test_parameters_reach_neo4j_but_never_the_record() -> None:
    rig = make()
    run(rig.gateway, call("RETURN $secret"))
    (execution,) = rig.executor.ran
    assert execution.parameters == {"secret": "hunter2"}
    assert all(event.parameters in ({"secret": None}, None) for event in rig.audit.events)


@pytest.mark.parametrize("count", [MAX_PARAMETERS, MAX_PARAMETERS + 1, 100_000])
def test_many_small_parameters_cannot_swell_the_record(count: int) -> None:
    """Each parameter costs the decision record a digest (and OPA's input a name), however
    small the value: a statement may carry MAX_PARAMETERS at most, refused beyond before any
    digest is made, recorded with none (100,000 one-byte values made a 9 MB record)."""
    rig = make()

    async def read() -> Statement:
        return Statement(text="RETURN 1", parameters={f"p{i}": 0 for i in range(count)})

    many = Call("r-1", "neo4j", "Bearer good", client=None, headers={}, statement=read)
    if count <= MAX_PARAMETERS:
        run(rig.gateway, many)
        assert len(rig.executor.ran) == 1
        return
    with pytest.raises(CypherGateError) as refused:
        run(rig.gateway, many)
    assert (refused.value.status, refused.value.reason) == (400, "too_many_parameters")
    assert rig.analyzer.analysed == [] and rig.executor.ran == []
    (record,) = rig.audit.events
    assert record.status == 400 and record.parameters is None


def test_a_statement_longer_than_the_gateway_reads_is_refused_before_it_is_read() -> None:
    """The gateway reads a statement's text itself before deciding on it (about 3 s of the
    event loop and 80 MB per MiB of tokens), and a Bolt RUN may be 16 MiB: one statement held
    every other request back for a minute. A text beyond MAX_STATEMENT_CHARACTERS is refused,
    recorded without it; values belong in parameters."""
    rig = make()
    text = "RETURN 1 AS " + "a." * (MAX_STATEMENT_CHARACTERS // 2) + "b"
    started = time.monotonic()
    with pytest.raises(CypherGateError) as refused:
        run(rig.gateway, call(text))
    assert (refused.value.status, refused.value.reason) == (400, "statement_too_long")
    assert rig.analyzer.analysed == [] and rig.executor.ran == []
    (record,) = rig.audit.events
    assert record.status == 400 and record.statement is None
    assert time.monotonic() - started < 1


def test_a_dag_without_a_grant_for_the_database_is_refused_before_anything_is_planned() -> None:
    rig = make(policy=FakePolicy(database_granted=False))
    with pytest.raises(PolicyDenied) as denied:
        run(rig.gateway, call("MATCH (n:Whatever) RETURN n"))
    assert denied.value.reasons == ["dag_not_granted"]
    assert rig.analyzer.analysed == [] and rig.policy.inputs == [] and rig.executor.ran == []
    assert rig.policy.preflights[0]["request"] == {"database": "neo4j"}
    (event,) = rig.audit.events
    assert event.status == 403 and event.decision is not None
    assert event.decision["reasons"] == ["dag_not_granted"] and event.decision["decision_id"]


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        ("CALL missing.proc()", "procedure_not_granted:*"),
        ("RETURN missing.fn(1)", "function_not_granted:*"),
    ],
)
def test_an_unknown_call_is_refused_like_a_known_one_when_no_call_is_granted(
    statement: str, reason: str
) -> None:
    """Neo4j's planning error would tell a DAG that may call nothing which procedures exist."""
    rig = make(policy=FakePolicy(calls_granted=False))
    with pytest.raises(PolicyDenied) as denied:
        run(rig.gateway, call(statement))
    assert denied.value.reasons == [reason]
    (event,) = rig.audit.events
    assert event.status == 403 and event.decision is not None
    assert event.decision["reasons"] == [reason]
    granted = make(policy=FakePolicy(calls_granted=True))  # may call some: Neo4j's own answer
    with pytest.raises(CypherGateError) as refused:
        run(granted.gateway, call(statement))
    assert refused.value.status == 400


class _Schema:
    """Neo4j's plans as a constraint changes them: once ``CREATE CONSTRAINT`` has taken effect
    (``created`` set), a write of ``:Secret`` also reads ``:Secret`` (a uniqueness constraint
    compares it with every other)."""

    def __init__(self) -> None:
        self.created = False
        self.explained: list[str] = []

    async def explain(self, database: str, statement: str) -> Analysis:
        del database
        self.explained.append(statement)
        if statement.startswith("CREATE CONSTRAINT"):
            return Analysis(query_type="s", facts=PlanFacts())
        read = frozenset({"Secret"}) if self.created else frozenset()
        facts = PlanFacts(labels_written=frozenset({"Secret"}), labels_read=read)
        return Analysis(query_type="w", facts=facts)


class _SlowSchema(FakeExecutor):
    """Creating the constraint takes Neo4j a while (it checks every existing node): it takes
    effect, with ``schema.created``, once ``done`` is set."""

    def __init__(self, schema: _Schema) -> None:
        super().__init__()
        self.schema, self.running, self.done = schema, asyncio.Event(), asyncio.Event()

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution, login: Login) -> AsyncIterator[FakeRows]:
        if execution.statement.startswith("CREATE CONSTRAINT"):
            self.running.set()
            await self.done.wait()
            self.schema.created = True
        async with super().run(execution, login) as rows:
            yield rows


@pytest.mark.parametrize("in_transaction", [False, True])
def test_an_analysis_made_while_a_schema_statement_runs_is_not_used_after_it(
    in_transaction: bool,
) -> None:
    """The schema epoch moved when the constraint was analysed, before it ran: a write analysed
    while it ran (here or on another worker) was planned without the constraint, and cached
    under the new epoch it would be decided on for the cache's time to live, never reading the
    label the constraint compares it with."""
    schema = _Schema()
    executor = _SlowSchema(schema)
    rig = make()
    gateway = fake_gateway(
        analyzer=Analyzer(schema, max_entries=16),
        policy=rig.policy,
        credentials=rig.broker,
        executor=executor,
        audit=rig.audit,
    )
    write = "CREATE (:Secret {key: $key})"

    async def constraint() -> None:
        create = call("CREATE CONSTRAINT FOR (s:Secret) REQUIRE s.key IS UNIQUE")
        if not in_transaction:
            async with gateway.run(create) as rows:
                await rows.summary()
            return
        transaction = gateway.begin(
            database="neo4j", access_mode=None, bookmarks=(), metadata={}, timeout_s=None
        )
        async with gateway.run(create, transaction=transaction) as rows:
            await rows.summary()
        executor.running.set()  # the constraint takes effect when the transaction commits
        await executor.done.wait()
        schema.created = True
        await transaction.commit()

    async def written() -> None:
        async with gateway.run(call(write)) as rows:
            await rows.summary()

    async def go() -> None:
        async with asyncio.timeout(10):
            creating = asyncio.create_task(constraint())
            await executor.running.wait()
            await written()  # analysed before the constraint exists
            executor.done.set()
            await creating
            await written()

    asyncio.run(go())
    assert schema.explained.count(write) == 2, "a plan from before the constraint was used"
    assert rig.policy.inputs[-1]["analysis"]["labels"]["read"] == ["Secret"]
