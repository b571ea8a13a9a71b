"""A Bolt client that misbehaves with its transactions and results, against the real stack.

A second gateway with a Bolt door of its own and a small ``server.bolt_max_transactions``: a
transaction left past its time-out is ended at its deadline, not when its client next speaks;
the door's transactions are bounded in total, whoever holds them; and one identity's results
left open cannot take every admission slot.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import neo4j
import pytest
from neo4j import Driver
from neo4j.exceptions import ClientError, Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

BOLT_MAX_TRANSACTIONS = 3
EMPTY_TIMEOUT_S = 2.0  # server.transaction_timeout_s: a transaction that has run nothing
TIMED_OUT = "Neo.ClientError.Transaction.TransactionTimedOutClientConfiguration"
LIMIT_REACHED = "Neo.TransientError.Transaction.MaximumTransactionLimitReached"


@pytest.fixture(scope="module")
def door(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondGateway]:
    """A gateway whose Bolt door holds at most three transactions, each left empty for two
    seconds at most; admission as by default."""

    def configure(config: dict[str, Any]) -> None:
        config["server"]["bolt_max_transactions"] = BOLT_MAX_TRANSACTIONS
        config["server"]["transaction_timeout_s"] = EMPTY_TIMEOUT_S

    gateway = SecondGateway(
        stack, tmp_path_factory.mktemp("bolt-tx"), "bolttx", configure, bolt=True
    )
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def driver(door: SecondGateway, dag: str) -> Driver:
    assert door.bolt_uri is not None
    return neo4j.GraphDatabase.driver(door.bolt_uri, auth=neo4j.bearer_auth(door.stack.token(dag)))


def ends_of(door: SecondGateway, marker: str) -> list[dict[str, Any]]:
    """The end records of the transactions whose BEGIN's metadata carried ``marker``."""
    with AuditReader(door.audit) as log:
        return [
            r
            for r in log.query(RecordFilter(event="transaction"))
            if r["transaction"].get("metadata", {}).get("probe") == marker
        ]


def on_neo4j(neo4j_admin: Driver, marker: str) -> list[str]:
    """Neo4j's transactions (their status) whose metadata carries ``marker``."""
    found, _, _ = neo4j_admin.execute_query(
        "SHOW TRANSACTIONS YIELD metaData, status RETURN metaData.probe AS probe, status"
    )
    return [r["status"] for r in found if r["probe"] == marker]


def test_a_transaction_past_its_time_out_ends_at_its_deadline(
    door: SecondGateway, neo4j_admin: Driver
) -> None:
    """Before, the gateway noticed only when the client next spoke: Neo4j kept the timed-out
    transaction (``Terminated``), the gateway its pooled connection, leased user and slot, and
    the next RUN was decided, recorded and sent to Neo4j before it failed."""
    marker = f"expired-{uuid.uuid4().hex[:8]}"
    with driver(door, "demo_reader") as reader, reader.session(database="neo4j") as session:
        transaction = session.begin_transaction(timeout=1.0, metadata={"probe": marker})
        assert transaction.run("RETURN 1 AS one").single(strict=True)["one"] == 1
        assert on_neo4j(neo4j_admin, marker) == ["Running"]
        time.sleep(2.5)  # the client says nothing
        (end,) = ends_of(door, marker)
        assert end["transaction"]["action"] == "rollback"
        assert end["transaction"]["cause"] == "expired"
        assert end["status"] == 202
        assert on_neo4j(neo4j_admin, marker) == []  # released on Neo4j
        # Its slot is free again: as many transactions as the door holds open now.
        others = [reader.session(database="neo4j") for _ in range(BOLT_MAX_TRANSACTIONS)]
        try:
            held = [s.begin_transaction() for s in others]
            for tx in held:
                tx.run("RETURN 1").consume()
            for tx in held:
                tx.rollback()
        finally:
            for other in others:
                other.close()
        with pytest.raises(ClientError) as told:
            transaction.run("RETURN 2 AS two").consume()
    assert told.value.code == TIMED_OUT
    assert len(ends_of(door, marker)) == 1  # recorded once
    request_id = told.value.message.rsplit("(request ", 1)[1].rstrip(")")
    with AuditReader(door.audit) as log:
        (refusal,) = log.query(RecordFilter(request_id=request_id))
        ran = [r for r in log.query(RecordFilter()) if r.get("statement") == "RETURN 2 AS two"]
    assert refusal["error"] == {"code": TIMED_OUT, "reason": "transaction_timed_out"}
    assert ran == []  # nothing decided, nothing sent to Neo4j


def test_a_result_left_open_past_the_deadline_ends_with_its_transaction(
    door: SecondGateway, neo4j_admin: Driver
) -> None:
    marker = f"open-{uuid.uuid4().hex[:8]}"
    with (
        driver(door, "demo_reader") as reader,
        reader.session(database="neo4j", fetch_size=1) as session,
    ):
        transaction = session.begin_transaction(timeout=1.0, metadata={"probe": marker})
        result = transaction.run("UNWIND range(1, 10) AS x RETURN x")
        first = result.peek()  # one row pulled of ten: the result is open
        assert first is not None and first["x"] == 1
        time.sleep(2.5)
        (end,) = ends_of(door, marker)
        assert end["transaction"]["cause"] == "expired"
        assert on_neo4j(neo4j_admin, marker) == []
        with pytest.raises(ClientError) as told:
            list(result)
    assert told.value.code == TIMED_OUT
    with AuditReader(door.audit) as log:
        (outcome,) = [
            r
            for r in log.query(RecordFilter(event="outcome"))
            if r["request_id"] == end["request_id"]
        ]
    assert outcome["error"]["reason"] == "transaction_timed_out"
    assert len(ends_of(door, marker)) == 1


def test_a_rollback_after_the_deadline_succeeds_as_neo4js_does(door: SecondGateway) -> None:
    marker = f"late-{uuid.uuid4().hex[:8]}"
    with driver(door, "demo_reader") as reader, reader.session(database="neo4j") as session:
        transaction = session.begin_transaction(timeout=1.0, metadata={"probe": marker})
        transaction.run("RETURN 1").consume()
        time.sleep(2.5)
        transaction.rollback()
        assert session.run("RETURN 3 AS three").single(strict=True)["three"] == 3
    (end,) = ends_of(door, marker)
    assert end["transaction"]["cause"] == "expired"


def test_a_transaction_that_runs_nothing_ends_and_gives_its_slot_back(door: SecondGateway) -> None:
    """A BEGIN and silence: no deadline on Neo4j (nothing is begun there before a statement),
    but a slot of the door's held until the connection idled out (300 s), so a few identities'
    empty transactions could hold every slot. It ends after server.transaction_timeout_s."""
    markers = [f"empty-{uuid.uuid4().hex[:8]}" for _ in range(BOLT_MAX_TRANSACTIONS)]
    with driver(door, "demo_reader") as reader:
        sessions = [reader.session(database="neo4j") for _ in markers]
        try:
            held = [
                s.begin_transaction(metadata={"probe": marker})
                for s, marker in zip(sessions, markers, strict=True)
            ]
            time.sleep(EMPTY_TIMEOUT_S + 1.5)  # every slot of the door held, nothing said
            for marker in markers:
                (end,) = ends_of(door, marker)
                assert (end["transaction"]["cause"], end["transaction"]["action"]) == (
                    "expired",
                    "rollback",
                )
            with reader.session(database="neo4j") as other:  # the slots are free again
                again = other.begin_transaction()
                assert again.run("RETURN 1 AS one").single(strict=True)["one"] == 1
                again.rollback()
            with pytest.raises(ClientError) as told:
                held[0].run("RETURN 2").consume()
            assert told.value.code == TIMED_OUT
        finally:
            for session in sessions:
                session.close()
    assert all(len(ends_of(door, marker)) == 1 for marker in markers)  # each recorded once


def test_the_doors_transactions_are_bounded_in_total(door: SecondGateway) -> None:
    """Each identity may hold 16, but the door holds ``server.bolt_max_transactions`` at most,
    whoever holds them: many identities' transactions kept as many pooled Neo4j connections."""
    with driver(door, "demo_reader") as reader, driver(door, "demo_writer") as writer:
        mine = [reader.session(database="neo4j") for _ in range(BOLT_MAX_TRANSACTIONS - 1)]
        theirs = [writer.session(database="neo4j") for _ in range(2)]
        try:
            held = [s.begin_transaction() for s in mine]
            held.append(theirs[0].begin_transaction())
            for tx in held:
                tx.run("RETURN 1").consume()
            with pytest.raises(Neo4jError) as refused:
                theirs[1].begin_transaction().run("RETURN 1").consume()
            held[0].rollback()  # a slot given back is a slot to take
            again = theirs[1].begin_transaction()
            assert again.run("RETURN 1 AS one").single(strict=True)["one"] == 1
            again.rollback()
            for tx in held[1:]:
                tx.rollback()
        finally:
            for session in mine + theirs:
                session.close()
    assert refused.value.code == LIMIT_REACHED
    request_id = refused.value.message.rsplit("(request ", 1)[1].rstrip(")")
    with AuditReader(door.audit) as log:
        (refusal,) = log.query(RecordFilter(request_id=request_id))
    assert refusal["status"] == 503
    assert refusal["error"]["reason"] == "bolt_max_transactions"


def test_one_identitys_open_results_leave_slots_for_others(door: SecondGateway) -> None:
    """40 connections of one identity each leave a result open (one row pulled of ten): before,
    they took all 32 admission slots (``server.admission.max_in_flight``) until their statements
    timed out, and another identity's statement waited its second and was refused."""
    assert door.bolt_uri is not None
    uri = door.bolt_uri
    hog = neo4j.bearer_auth(door.stack.token("demo_reader"))
    other = neo4j.bearer_auth(door.stack.token("demo_writer"))

    async def scenario() -> tuple[list[Any], float, int]:
        async with neo4j.AsyncGraphDatabase.driver(
            uri, auth=hog, max_connection_pool_size=50
        ) as hogging:
            sessions = [hogging.session(database="neo4j", fetch_size=1) for _ in range(40)]

            async def leave_open(session: neo4j.AsyncSession) -> Any:
                result = await session.run("UNWIND range(1, 10) AS x RETURN x")
                first = await result.peek()
                return None if first is None else first["x"]

            try:
                held = await asyncio.gather(*map(leave_open, sessions), return_exceptions=True)
                async with neo4j.AsyncGraphDatabase.driver(uri, auth=other) as theirs:
                    started = time.monotonic()
                    records, _, _ = await theirs.execute_query("RETURN 1 AS one", database_="neo4j")
                    took = time.monotonic() - started
                return held, took, records[0]["one"]
            finally:
                for session in sessions:
                    await session.close()

    held, took, one = asyncio.run(scenario())
    opened = [h for h in held if h == 1]
    refused = [h for h in held if isinstance(h, neo4j.exceptions.TransientError)]
    print(f"open results: {len(opened)}, refused: {len(refused)}, other's statement: {took:.3f} s")
    assert one == 1 and took < 3.0
    assert len(opened) == 24  # the identity's share: three quarters of max_in_flight
    assert len(opened) + len(refused) == 40
