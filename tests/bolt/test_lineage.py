"""Lineage through the Bolt door with the official Python driver, against the real stack: asked
for with ``cyphergate.lineage: true`` in the transaction metadata (``Query(metadata=...)``,
``begin_transaction(metadata=...)``), each result's summary metadata names what its statement
touched; never unless asked, never for a refused statement."""

from __future__ import annotations

import uuid
from typing import Any

import neo4j
import pytest
from neo4j import Driver, Query
from neo4j.exceptions import ClientError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.lineage import namespace_of

pytestmark = pytest.mark.integration

ASK = {"cyphergate.lineage": True}
# Reads :BoltLineagePerson, writes :BoltLineageMovie and [:BOLT_LINEAGE_CAST] (the module's
# nodes are removed after it: their labels start with Bolt).
CAST = (
    "MATCH (p:BoltLineagePerson {name: $name}) "
    "CREATE (m:BoltLineageMovie {title: $title})<-[:BOLT_LINEAGE_CAST]-(p) RETURN m.title AS t"
)


def driver(stack: DevStack, status: dict[str, Any], dag: str) -> Driver:
    return neo4j.GraphDatabase.driver(
        status["gateway_bolt_uri"], auth=neo4j.bearer_auth(stack.token(dag))
    )


def person(neo4j_admin: Driver) -> str:
    name = f"person-{uuid.uuid4().hex[:8]}"
    neo4j_admin.execute_query("CREATE (:BoltLineagePerson {name: $name})", name=name)
    return name


def cast_lineage(status: dict[str, Any], request_id: object) -> dict[str, Any]:
    assert isinstance(request_id, str) and request_id
    return {
        "request_id": request_id,
        "namespace": namespace_of(status["neo4j"]["bolt_uri"]),
        "database": "neo4j",
        "labels": {"read": ["BoltLineagePerson"], "write": ["BoltLineageMovie"]},
        "relationship_types": {"read": [], "write": ["BOLT_LINEAGE_CAST"]},
    }


def trail(stack: DevStack, request_id: str) -> list[dict[str, Any]]:
    with AuditReader(stack.audit_path) as log:
        return list(log.query(RecordFilter(request_id=request_id)))


def test_an_autocommit_result_carries_its_lineage_when_asked(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    name = person(neo4j_admin)
    with driver(stack, status, "demo_writer") as writer, writer.session() as session:
        asked = session.run(Query(CAST, metadata=ASK), name=name, title="asked")
        assert [r["t"] for r in asked] == ["asked"]
        lineage = asked.consume().metadata["lineage"]
        assert lineage == cast_lineage(status, lineage["request_id"])
        plain = session.run(Query(CAST), name=name, title="unasked").consume()
        assert "lineage" not in plain.metadata
        assert plain.counters.nodes_created == 1
        # DISCARD ends a result too: its SUCCESS carries the lineage as PULL's does.
        discarded = session.run(Query(CAST, metadata=ASK), name=name, title="discarded")
        assert discarded.consume().metadata["lineage"]["labels"]["write"] == ["BoltLineageMovie"]
    records = trail(stack, lineage["request_id"])
    assert [r["event"] for r in records] == ["decision", "outcome"]
    assert records[0]["statement"] == CAST


def test_each_statement_of_a_transaction_carries_its_own(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    name = person(neo4j_admin)
    with driver(stack, status, "demo_writer") as writer, writer.session() as session:
        with session.begin_transaction(metadata=ASK) as tx:
            first = tx.run(CAST, name=name, title="in-tx")
            # A second statement while the first is open: the first's end still carries its own.
            second = tx.run("MATCH (p:BoltLineagePerson) RETURN count(p) AS n")
            one = first.consume().metadata["lineage"]
            two = second.consume().metadata["lineage"]
            tx.commit()
        assert one == cast_lineage(status, one["request_id"])
        assert two["labels"] == {"read": ["BoltLineagePerson"], "write": []}
        assert two["request_id"] != one["request_id"]
        with session.begin_transaction() as tx:
            assert "lineage" not in tx.run("RETURN 1 AS x").consume().metadata
            tx.commit()
    found, _, _ = neo4j_admin.execute_query(
        "MATCH (m:BoltLineageMovie {title: 'in-tx'}) RETURN count(m) AS n"
    )
    assert found[0]["n"] == 1


def test_a_refused_statement_fails_without_lineage(stack: DevStack, status: dict[str, Any]) -> None:
    with driver(stack, status, "demo_reader") as reader, reader.session() as session:
        with pytest.raises(ClientError) as refused:
            session.run(Query("CREATE (:BoltLineageMovie {title: 'no'})", metadata=ASK)).consume()
        assert refused.value.code == "Neo.ClientError.Security.Forbidden"
        # The one FAILURE carries a code and a message (with the request id), nothing else.
        request_id = str(refused.value.message).rsplit("(request ", 1)[1].rstrip(")")
        (record,) = trail(stack, request_id)
        assert record["decision"]["reasons"] == ["write_not_granted"]


def test_a_flag_that_is_not_a_boolean_is_refused_and_recorded(
    stack: DevStack, status: dict[str, Any]
) -> None:
    with driver(stack, status, "demo_reader") as reader, reader.session() as session:
        bad = Query("RETURN 1 AS x", metadata={"cyphergate.lineage": "yes"})
        with pytest.raises(ClientError) as refused:
            session.run(bad).consume()
        assert refused.value.code == "Neo.ClientError.Request.Invalid"
        request_id = str(refused.value.message).rsplit("(request ", 1)[1].rstrip(")")
        (record,) = trail(stack, request_id)
        assert record["error"]["reason"] == "bad_lineage_flag"
        with pytest.raises(ClientError) as at_begin:
            session.begin_transaction(metadata={"cyphergate.lineage": 1}).run("RETURN 1").consume()
        assert at_begin.value.code == "Neo.ClientError.Request.Invalid"
        # The connection is usable again (the driver RESETs it).
        assert session.run("RETURN 1 AS x").data() == [{"x": 1}]
