"""Explicit transactions on the request path (proxy/gateway/transactions.py), with fakes at the
seams: each statement decided and recorded on its own, one DAG and one access mode per
transaction, a failure rolling it all back, and the records of how it ended. The same paths
against the real services, through the neo4j driver, are in test_driver_over_http.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from proxy.audit.record import AuditEvent, Receipt
from proxy.errors import (
    AuditUnavailable,
    CypherGateError,
    DagNotPermitted,
    GraphUnavailable,
    Neo4jClientError,
    PolicyDenied,
    RowLimitExceeded,
    TransactionAccessMode,
    TransactionNotFound,
)
from proxy.gateway.call import GATEWAY_METADATA_KEYS, Call, Statement
from proxy.gateway.transactions import Transaction, neo4j_metadata
from proxy.principal import DagResolver, Principal
from proxy.settings import BindingSettings
from proxy.statement import AccessMode
from tests.fakes import (
    READER,
    FakeAnalyzer,
    FakeAudit,
    FakeBroker,
    FakeExecutor,
    FakePolicy,
    FakeUpstream,
    StuckExecutor,
    fake_gateway,
)


class Rig:
    """The request path with fakes at its seams; ``etl`` may also act as DAG ``other``."""

    def __init__(self, policy: FakePolicy | None = None, audit: FakeAudit | None = None) -> None:
        self.policy = policy or FakePolicy()
        self.audit = audit or FakeAudit()
        self.broker = FakeBroker(user="cg_etl_1")
        self.executor = FakeExecutor()
        self.analyzer = FakeAnalyzer()
        binding = BindingSettings(oidc_issuer=READER.issuer, subject="s", dags=["etl", "other"])
        self.gateway = fake_gateway(
            resolver=DagResolver([binding]),
            analyzer=self.analyzer,
            policy=self.policy,
            credentials=self.broker,
            executor=self.executor,
            audit=self.audit,
        )

    def begin(
        self,
        *,
        access_mode: AccessMode | None = None,
        metadata: dict[str, Any] | None = None,
        timeout_s: float | None = None,
        bookmarks: tuple[str, ...] = (),
    ) -> Transaction:
        return self.gateway.begin(
            database="neo4j",
            access_mode=access_mode,
            bookmarks=bookmarks,
            metadata=metadata or {},
            timeout_s=timeout_s,
        )

    async def run(
        self,
        transaction: Transaction,
        statement: str,
        request_id: str,
        headers: dict[str, str] | None = None,
    ) -> list[list[Any]]:
        async with self.gateway.run(
            call(statement, request_id, headers=headers), transaction=transaction
        ) as rows:
            values = [row async for row in rows]
            await rows.summary()
        return values

    async def run_alone(
        self, statement: str, request_id: str, metadata: dict[str, Any] | None = None
    ) -> None:
        """``statement`` in an auto-commit transaction of its own, every row read."""
        async with self.gateway.run(call(statement, request_id, metadata=metadata)) as rows:
            [row async for row in rows]
            await rows.summary()

    @property
    def upstream(self) -> FakeUpstream:
        (upstream,) = self.executor.transactions
        return upstream

    def records(self) -> list[tuple[str, str, int | None]]:
        return [(e.event, e.request_id, e.status) for e in self.audit.events]

    def ended(self) -> AuditEvent:
        (event,) = [e for e in self.audit.events if e.event == "transaction"]
        return event


def call(
    statement: str,
    request_id: str,
    *,
    headers: dict[str, str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> Call:
    async def read() -> Statement:
        return Statement(
            text=statement,
            parameters={},
            access_mode="WRITE",
            bookmarks=("b0",),
            metadata=metadata or {},
        )

    return Call(
        request_id=request_id,
        database="neo4j",
        authorization="Bearer good",
        client="10.0.0.1:1234",
        headers={"x-cyphergate-dag": "etl", "x-cyphergate-task": "load", **(headers or {})},
        statement=read,
    )


def go(work: Callable[[], Coroutine[Any, Any, object]]) -> None:
    asyncio.run(work())


def test_nothing_opens_on_neo4j_until_the_first_statement() -> None:
    rig = Rig()
    transaction = rig.begin()
    assert transaction.open and not transaction.failed
    assert rig.broker.held == [] and rig.executor.transactions == [] and rig.audit.events == []


def test_statements_are_each_decided_and_recorded_then_committed() -> None:
    rig = Rig()
    transaction = rig.begin(bookmarks=("FB:before",))
    bookmarks: list[str] = []

    async def work() -> None:
        assert await rig.run(transaction, "CREATE (:N)", "r-1") == [[1]]
        assert await rig.run(transaction, "RETURN 1", "r-2") == [[1]]
        bookmarks.extend(await transaction.commit(request_id="r-3"))

    go(work)
    assert bookmarks == ["FB:committed"]
    assert not transaction.open and not transaction.failed
    # One credential, held from the first statement to the end; one Neo4j transaction.
    assert rig.broker.held == ["etl"] and rig.broker.released == ["etl"]
    upstream = rig.upstream
    assert upstream.ended == "commit" and upstream.closed
    assert [e.statement for e in upstream.ran] == ["CREATE (:N)", "RETURN 1"]
    assert rig.executor.ran == []  # nothing ran in a transaction of its own
    assert upstream.opening.bookmarks == ("FB:before",)
    assert len(rig.analyzer.analysed) == len(rig.policy.inputs) == 2
    assert rig.records() == [
        ("decision", "r-1", None),
        ("outcome", "r-1", 202),
        ("decision", "r-2", None),
        ("outcome", "r-2", 202),
        ("transaction", "r-3", 202),
    ]
    decisions = [e for e in rig.audit.events if e.event == "decision"]
    assert all(e.transaction == {"id": transaction.id} for e in rig.audit.events[:4])
    assert all(e.credential == {"user": "cg_etl_1"} for e in decisions)
    # The statements' own access mode and bookmarks give way to the transaction's.
    assert all(e.requested_access_mode is None for e in decisions)
    ended = rig.ended()
    assert ended.transaction == {
        "id": transaction.id,
        "action": "commit",
        "cause": "client",
        "statements": 2,
    }
    assert ended.principal is not None and ended.principal["dag"] == "etl"
    assert ended.credential == {"user": "cg_etl_1"} and ended.access_mode == "WRITE"
    assert ended.client == "10.0.0.1:1234" and ended.verdict == "none"
    with pytest.raises(TransactionNotFound):
        go(lambda: transaction.commit())


def test_a_rollback_is_recorded_and_gives_back_what_it_held() -> None:
    rig = Rig()
    transaction = rig.begin()

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        await transaction.rollback(request_id="r-2")
        await transaction.rollback()  # nothing left to do, and nothing recorded

    go(work)
    assert rig.upstream.ended == "rollback" and rig.upstream.closed
    assert rig.broker.released == ["etl"]
    assert rig.records()[-1] == ("transaction", "r-2", 202)
    assert (rig.ended().transaction or {})["action"] == "rollback"
    assert not transaction.open and not transaction.failed


def test_a_transaction_in_which_nothing_ran_commits_nothing() -> None:
    rig = Rig()
    transaction = rig.begin(bookmarks=("FB:before",))
    assert asyncio.run(transaction.commit()) == []
    assert rig.broker.held == [] and rig.executor.transactions == []
    ended = rig.ended()
    assert ended.principal is None and ended.credential is None and ended.status == 202
    assert ended.transaction is not None and ended.transaction["statements"] == 0


@pytest.mark.parametrize(
    ("second", "error"),
    [
        ("refused by the policy", PolicyDenied),
        ("CREATE (:N {x: 1 / 0})", Neo4jClientError),  # Neo4j fails it
    ],
)
def test_a_refused_or_failed_statement_rolls_everything_back(
    second: str, error: type[CypherGateError]
) -> None:
    rig = Rig()
    rig.executor.fail_on = "1 / 0"
    transaction = rig.begin()

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        rig.policy.allow = second != "refused by the policy"
        with pytest.raises(error):
            await rig.run(transaction, second, "r-2")
        rig.policy.allow = True
        with pytest.raises(TransactionNotFound) as gone:
            await rig.run(transaction, "RETURN 1", "r-3")
        assert gone.value.status == 404
        assert gone.value.code == "Neo.ClientError.Transaction.TransactionNotFound"
        with pytest.raises(TransactionNotFound):
            await transaction.commit()
        await transaction.rollback()  # already rolled back

    go(work)
    assert transaction.failed and not transaction.open
    assert rig.upstream.ended == "rollback" and rig.upstream.closed
    assert rig.broker.released == ["etl"]
    refused = 403 if error is PolicyDenied else 400
    second_records: list[tuple[str, str, int | None]] = [("decision", "r-2", refused)]
    if error is Neo4jClientError:  # it ran, so it has an outcome
        second_records = [("decision", "r-2", None), ("outcome", "r-2", 400)]
    assert rig.records() == [
        ("decision", "r-1", None),
        ("outcome", "r-1", 202),
        *second_records,
        ("transaction", "r-2", 202),  # rolled back, after the statement's own records
        ("decision", "r-3", 404),
    ]
    ended = rig.ended()
    assert ended.transaction is not None and ended.transaction["cause"] == "failure"
    # Every statement was recorded with the transaction it was meant for.
    assert all(
        e.transaction is not None and e.transaction["id"] == transaction.id
        for e in rig.audit.events
    )


def test_a_row_limit_exceeded_in_a_transaction_rolls_it_back() -> None:
    rig = Rig(policy=FakePolicy(row_limit=1))
    rig.executor.rows = [[1], [2]]
    transaction = rig.begin()

    async def work() -> None:
        with pytest.raises(RowLimitExceeded):
            await rig.run(transaction, "CREATE (:N)", "r-1")

    go(work)
    assert transaction.failed and rig.upstream.ended == "rollback"


def test_another_dag_in_the_same_transaction_is_refused() -> None:
    rig = Rig()
    transaction = rig.begin()

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        with pytest.raises(DagNotPermitted) as refused:
            await rig.run(transaction, "RETURN 1", "r-2", {"x-cyphergate-dag": "other"})
        assert refused.value.status == 403 and "DAG etl" in refused.value.message

    go(work)
    assert transaction.failed and rig.upstream.ended == "rollback"
    switched = rig.audit.events[2]
    assert switched.principal is not None and switched.principal["dag"] == "other"
    assert switched.error == {
        "code": "Neo.ClientError.Security.Forbidden",
        "reason": "transaction_dag_changed",
    }
    assert len(rig.policy.inputs) == 1  # refused before it was decided


def test_another_identity_in_the_same_transaction_is_refused() -> None:
    rig = Rig()
    transaction = rig.begin()
    intruder = Call(
        request_id="r-2",
        database="neo4j",
        authorization="Bearer neighbour",
        client=None,
        headers={},
        statement=call("RETURN 1", "r-2").statement,
    )

    async def work() -> None:
        await rig.run(transaction, "RETURN 1", "r-1")
        with pytest.raises(DagNotPermitted):
            async with rig.gateway.run(intruder, transaction=transaction):
                pass

    go(work)
    assert transaction.failed
    assert rig.audit.events[2].error is not None
    assert rig.audit.events[2].error["reason"] == "transaction_identity_changed"


def test_a_read_transaction_refuses_a_write_before_it_runs() -> None:
    rig = Rig()
    transaction = rig.begin(access_mode="READ")

    async def work() -> None:
        assert await rig.run(transaction, "RETURN 1", "r-1") == [[1]]
        with pytest.raises(TransactionAccessMode) as refused:
            await rig.run(transaction, "CREATE (:N)", "r-2")
        assert refused.value.code == "Neo.ClientError.Statement.AccessMode"
        assert "READ" in refused.value.message

    go(work)
    assert rig.upstream.opening.access_mode == "READ"
    assert [e.statement for e in rig.upstream.ran] == ["RETURN 1"]
    assert transaction.failed
    assert rig.policy.inputs[0]["request"]["access_mode"] == "READ"


@pytest.mark.parametrize(
    ("requested", "may_write", "first", "mode"),
    [
        (None, True, "RETURN 1", "WRITE"),  # a read first: the caller may write next
        (None, False, "RETURN 1", "READ"),  # a DAG that may only read
        ("READ", True, "RETURN 1", "READ"),  # the caller asked
        ("WRITE", True, "CREATE (:N)", "WRITE"),
    ],
)
def test_the_access_mode_is_chosen_with_the_first_statement(
    requested: AccessMode | None, may_write: bool, first: str, mode: AccessMode
) -> None:
    # As the real policy, a statement's own mode is READ when it only reads.
    decided: AccessMode = "WRITE" if first.startswith("CREATE") else "READ"
    rig = Rig(policy=FakePolicy(access_mode=decided, may_write=may_write))
    transaction = rig.begin(access_mode=requested)
    go(lambda: rig.run(transaction, first, "r-1"))
    assert rig.upstream.opening.access_mode == mode
    assert rig.audit.events[0].access_mode == mode


def test_a_rollback_after_the_end_says_it_rolled_back_nothing() -> None:
    """So that a DELETE whose turn came after another request's commit answers 404, not 200."""
    rig = Rig()
    transaction = rig.begin()
    said: list[bool] = []

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        await transaction.commit()
        said.append(await transaction.rollback())

    go(work)
    assert said == [False]
    assert rig.upstream.ended == "commit"


def test_caller_metadata_never_overrides_the_gateways_keys() -> None:
    rig = Rig()
    forged = dict.fromkeys(GATEWAY_METADATA_KEYS, "forged")
    transaction = rig.begin(metadata={**forged, "lineage": "job-7", "ratio": 0.5})

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        await rig.run(transaction, "RETURN 1", "r-2")
        await transaction.commit()

    go(work)
    metadata = dict(rig.upstream.opening.metadata)
    assert metadata == {
        "dag_id": "etl",
        "task_id": "load",
        "request_id": "r-1",  # the first statement's
        "decision_id": "d-1",
        "transaction_id": transaction.id,
        "lineage": "job-7",
        "ratio": 0.5,
    }
    # The audit records keep what the caller sent, as context, in their canonical form.
    context = {**forged, "lineage": "job-7", "ratio": "0.5"}
    assert rig.audit.events[0].transaction == {"id": transaction.id, "metadata": context}
    assert rig.audit.events[1].transaction == {"id": transaction.id}  # an outcome
    assert (rig.ended().transaction or {})["metadata"] == context


def test_an_auto_commit_statements_metadata_is_passed_on_and_recorded_as_context() -> None:
    rig = Rig()
    forged = dict.fromkeys(GATEWAY_METADATA_KEYS, "forged")
    sent = {**forged, "lineage": "job-7", "ratio": 0.5}
    go(lambda: rig.run_alone("CREATE (:N)", "r-1", sent))
    (execution,) = rig.executor.ran
    assert dict(execution.metadata) == {
        "dag_id": "etl",
        "task_id": "load",
        "request_id": "r-1",
        "decision_id": "d-1",
        "lineage": "job-7",
        "ratio": 0.5,
    }
    decision, outcome = rig.audit.events
    context = {**forged, "lineage": "job-7", "ratio": "0.5"}
    assert decision.transaction == {"metadata": context}  # its own transaction: no id
    assert outcome.event == "outcome" and outcome.transaction is None


def test_an_auto_commit_statement_without_metadata_records_no_transaction() -> None:
    rig = Rig()
    go(lambda: rig.run_alone("RETURN 1", "r-1"))
    assert [event.transaction for event in rig.audit.events] == [None, None]
    assert set(rig.executor.ran[0].metadata) == {"dag_id", "task_id", "request_id", "decision_id"}


def test_the_gateway_keys_are_those_its_metadata_carries() -> None:
    principal = Principal(identity=READER, dag="etl", task="t", run="r", try_number=1)
    traced = neo4j_metadata(principal, "r-1", "d-1", "00-" + "1" * 32 + "-" + "2" * 16 + "-01")
    assert set(traced) | {"transaction_id"} == set(GATEWAY_METADATA_KEYS)


@pytest.mark.parametrize(("asked", "timeout_s"), [(None, 5.0), (2.0, 2.0), (9.0, 5.0), (0, 5.0)])
def test_the_timeout_is_the_smaller_of_the_callers_and_the_decisions(
    asked: float | None, timeout_s: float
) -> None:
    rig = Rig()  # the fake policy's decisions carry 5 s
    transaction = rig.begin(timeout_s=asked)
    go(lambda: rig.run(transaction, "RETURN 1", "r-1"))
    assert rig.upstream.opening.timeout_s == timeout_s


def test_a_refused_commit_is_recorded_and_raised() -> None:
    rig = Rig()
    transaction = rig.begin()

    async def work() -> None:
        await rig.run(transaction, "CREATE (:N)", "r-1")
        rig.upstream.commit_fails = GraphUnavailable(reason="ServiceUnavailable")
        with pytest.raises(GraphUnavailable):
            await transaction.commit(request_id="r-2")

    go(work)
    assert transaction.failed and rig.upstream.closed and rig.broker.released == ["etl"]
    ended = rig.ended()
    assert ended.status == 503 and ended.error is not None
    assert ended.error["reason"] == "ServiceUnavailable"


def test_a_transaction_neo4j_will_not_begin_fails_its_first_statement() -> None:
    rig = Rig()
    rig.executor.begin_fails = GraphUnavailable(reason="ServiceUnavailable")
    transaction = rig.begin()

    async def work() -> None:
        with pytest.raises(GraphUnavailable):
            await rig.run(transaction, "RETURN 1", "r-1")

    go(work)
    assert transaction.failed and rig.broker.released == ["etl"]
    assert rig.records() == [("decision", "r-1", 503), ("transaction", "r-1", 202)]


def test_an_unwritable_audit_log_runs_nothing_and_ends_the_transaction() -> None:
    rig = Rig(audit=FakeAudit(broken=True))
    transaction = rig.begin()

    async def work() -> None:
        with pytest.raises(AuditUnavailable):
            await rig.run(transaction, "CREATE (:N)", "r-1")

    go(work)
    assert rig.upstream.ran == [] and rig.upstream.ended == "rollback"
    assert transaction.failed


def test_statements_take_turns_in_the_order_they_came() -> None:
    rig = Rig()
    transaction = rig.begin()

    async def work() -> None:
        await asyncio.gather(
            *(rig.run(transaction, f"RETURN {n}", f"r-{n}") for n in range(5)),
        )
        await transaction.commit()

    go(work)
    order = [e.request_id for e in rig.audit.events if e.event != "transaction"]
    # Each statement's decision and outcome are next to each other: one at a time.
    assert order == [f"r-{n}" for n in range(5) for _ in range(2)]
    assert [e.statement for e in rig.upstream.ran] == [f"RETURN {n}" for n in range(5)]


@pytest.mark.parametrize("explicit", [True, False], ids=["in a transaction", "auto-commit"])
def test_a_statement_cancelled_while_it_runs_leaves_its_outcome(explicit: bool) -> None:
    """A gateway stopping cancels what it is running (the Bolt door's connections, a server's
    requests): a statement whose decision was written ahead still gets its outcome, or verify
    reports it as unanswered although it was rolled back."""
    rig = Rig()
    stuck = rig.executor = StuckExecutor()
    rig.gateway = rig.gateway.with_executor(stuck)
    transaction = rig.begin()

    async def work() -> None:
        running = asyncio.create_task(
            rig.run(transaction, "CREATE (:N)", "r-1")
            if explicit
            else rig.run_alone("CREATE (:N)", "r-1")
        )
        await asyncio.wait_for(stuck.running.wait(), 5)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    go(work)
    (decision,) = [e for e in rig.audit.events if e.event == "decision"]
    assert decision.status is None  # written ahead: the statement was sent
    (outcome,) = [e for e in rig.audit.events if e.event == "outcome"]
    assert outcome.request_id == "r-1" and outcome.status == 503
    assert outcome.error is not None and outcome.error["reason"] == "cancelled"
    if explicit:
        assert transaction.failed and rig.upstream.ended == "rollback"
        assert rig.ended().transaction["cause"] == "failure"  # type: ignore[index]


class SlowOutcomes(FakeAudit):
    """Outcomes written only once let (``written``), as a disk that is slow to sync is."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.written = asyncio.Event()

    async def append_after(self, event: AuditEvent) -> Receipt | None:
        self.writing.set()
        await self.written.wait()
        return await super().append_after(event)


def test_a_statement_cancelled_twice_still_leaves_its_outcome() -> None:
    """A stopping gateway may cancel again while the first cancellation's outcome is being
    written (a shutdown with a time-out of its own): the outcome is written all the same."""
    audit = SlowOutcomes()
    rig = Rig(audit=audit)
    stuck = StuckExecutor()
    rig.gateway = rig.gateway.with_executor(stuck)

    async def work() -> None:
        running = asyncio.create_task(rig.run_alone("CREATE (:N)", "r-1"))
        await asyncio.wait_for(stuck.running.wait(), 5)
        running.cancel()
        await asyncio.wait_for(audit.writing.wait(), 5)
        running.cancel()  # while the outcome is on its way
        with pytest.raises(asyncio.CancelledError):
            await running
        audit.written.set()
        for _ in range(10):  # the outcome's write goes on beyond its cancelled caller
            await asyncio.sleep(0)

    go(work)
    (outcome,) = [e for e in audit.events if e.event == "outcome"]
    assert outcome.request_id == "r-1" and outcome.status == 503


def test_a_decision_that_says_read_is_held_to_it_in_a_write_transaction() -> None:
    """The decision's access mode is a constraint: a statement it says runs READ that writes
    fails on its own (Neo4j runs it in a READ transaction); in a transaction begun WRITE it
    must be refused before it runs, not run as a write."""
    rig = Rig(policy=FakePolicy(access_mode="READ"))
    transaction = rig.begin()

    async def work() -> None:
        assert await rig.run(transaction, "RETURN 1", "r-1") == [[1]]
        with pytest.raises(TransactionAccessMode) as refused:
            await rig.run(transaction, "CREATE (:N)", "r-2")
        assert refused.value.reason == "decision_read_only"

    go(work)
    assert rig.upstream.opening.access_mode == "WRITE"
    assert [e.statement for e in rig.upstream.ran] == ["RETURN 1"]
    assert transaction.failed and rig.upstream.ended == "rollback"
