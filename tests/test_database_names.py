"""Which database a Query API request acts on, against the real stack: its name as Neo4j reads
it (case-insensitive, in lower case), decided before anything opens, a transaction's too."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration


def records_of(stack: DevStack, response: httpx.Response) -> list[dict[str, Any]]:
    request_id = response.headers["X-CypherGate-Request-ID"]
    with AuditReader(stack.audit_path) as reader:
        return list(reader.query(RecordFilter(request_id=request_id)))


def bearer(stack: DevStack, dag: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(dag)}"}


def test_neo4j_reads_a_database_name_in_any_case(neo4j_admin: Driver) -> None:
    """What the gateway follows: Neo4j runs ``NEO4J`` and ``SyStEm`` on ``neo4j`` and
    ``system``."""
    for asked, runs_on in (("NEO4J", "neo4j"), ("SyStEm", "system"), ("Neo4j", "neo4j")):
        records, _, _ = neo4j_admin.execute_query("CALL db.info() YIELD name", database_=asked)
        assert records[0]["name"] == runs_on


@pytest.mark.parametrize(
    ("asked", "runs_on"),
    [("neo4j", "neo4j"), ("NEO4J", "neo4j"), ("Neo4J", "neo4j"), ("SYSTEM", "system")],
)
def test_a_database_named_in_any_case_is_decided_as_the_one_neo4j_runs_on(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver, asked: str, runs_on: str
) -> None:
    """Found by review: ``/db/NEO4J/query/v2`` was refused ``database_not_granted:NEO4J``
    while Neo4j runs it on ``neo4j``. A name differing in case only gets the decision of the
    database Neo4j runs it on (demo_writer may write on neo4j, and reach nothing on system),
    and the record names that database."""
    label = "T" + uuid.uuid4().hex[:12]
    headers = bearer(stack, "demo_writer")
    statement = {"statement": f"CREATE (:`{label}`)"}
    answers = [
        gateway.post(f"/db/{name}/query/v2", json=statement, headers=headers)
        for name in (asked, runs_on)
    ]
    assert answers[0].status_code == answers[1].status_code, answers[0].text
    records = [records_of(stack, answer) for answer in answers]
    assert [r["database"] for r in records[0]] == [r["database"] for r in records[1]]
    assert {r["database"] for r in records[0]} == {runs_on}
    decisions = [r[0]["decision"] or {} for r in records]
    assert decisions[0].get("reasons") == decisions[1].get("reasons")
    if runs_on == "system":  # demo_writer has no grant for it
        assert answers[0].status_code == 403
        assert "database_not_granted:system" in answers[0].json()["errors"][0]["message"]
    else:  # both ran, on the database Neo4j runs them on
        found, _, _ = neo4j_admin.execute_query(
            f"MATCH (n:`{label}`) RETURN count(n) AS n", database_=runs_on
        )
        assert found[0]["n"] == 2


def test_a_transaction_is_of_the_database_neo4j_runs_it_on(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """A transaction opened on ``NEO4J`` is the one ``/db/neo4j/.../tx/{id}`` names."""
    headers = bearer(stack, "demo_writer")
    opened = gateway.post("/db/NEO4J/query/v2/tx", json={}, headers=headers)
    assert opened.status_code == 202, opened.text
    transaction = opened.json()["transaction"]["id"]
    ran = gateway.post(
        f"/db/neo4j/query/v2/tx/{transaction}/commit",
        json={"statement": "RETURN 1 AS one"},
        headers=headers,
    )
    assert ran.status_code == 202, ran.text
    assert ran.json()["data"]["values"] == [[1]]


def test_a_transaction_on_a_database_without_a_grant_is_refused_when_it_opens(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: ``POST /db/system/query/v2/tx`` opened a transaction (202, no record)
    whose first statement was then refused, and it held one of its identity's slots meanwhile.
    Now the opening is refused as its statement would be, recorded once, and holds nothing: more
    refused openings than the identity has slots leave it free to open one it may."""
    headers = bearer(stack, "demo_writer")
    for _ in range(17):  # server.max_transactions_per_identity: 16
        refused = gateway.post("/db/system/query/v2/tx", json={}, headers=headers)
        assert refused.status_code == 403, refused.text
        (error,) = refused.json()["errors"]
        assert error["code"] == "Neo.ClientError.Security.Forbidden"
        assert "database_not_granted:system" in error["message"]
        (record,) = records_of(stack, refused)
        assert (record["status"], record["database"]) == (403, "system")
        assert "database_not_granted:system" in record["decision"]["reasons"]
    opened = gateway.post("/db/neo4j/query/v2/tx", json={}, headers=headers)
    assert opened.status_code == 202, opened.text
    transaction = opened.json()["transaction"]["id"]
    rolled_back = gateway.delete(f"/db/neo4j/query/v2/tx/{transaction}", headers=headers)
    assert rolled_back.status_code == 200
