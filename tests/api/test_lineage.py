"""Lineage in the Query API's answers, against the real stack: asked for with
``X-CypherGate-Lineage: true``, what the statement read and wrote (from the analysis the policy
decided on), the namespace and the request id that finds its audit records; never for a refused
statement, never unless asked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.lineage import namespace_of

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"
TX = "/db/neo4j/query/v2/tx"
LINEAGE = {"X-CypherGate-Lineage": "true"}
# Reads :LineageApiPerson, writes :LineageApiMovie and [:LINEAGE_API_CAST].
CAST = (
    "MATCH (p:LineageApiPerson {name: $name}) "
    "CREATE (m:LineageApiMovie {title: $title})<-[:LINEAGE_API_CAST]-(p) RETURN m.title AS title"
)


@pytest.fixture(scope="module")
def person(neo4j_admin: Driver) -> Iterator[str]:
    name = f"person-{uuid.uuid4().hex[:8]}"
    neo4j_admin.execute_query("CREATE (:LineageApiPerson {name: $name})", name=name)
    yield name
    neo4j_admin.execute_query(
        "MATCH (n) WHERE n:LineageApiPerson OR n:LineageApiMovie DETACH DELETE n"
    )


def headers(stack: DevStack, dag: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token(dag)}", **(extra or {})}


def expected(status: dict[str, Any], request_id: str) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "namespace": namespace_of(status["neo4j"]["bolt_uri"]),
        "database": "neo4j",
        "labels": {"read": ["LineageApiPerson"], "write": ["LineageApiMovie"]},
        "relationship_types": {"read": [], "write": ["LINEAGE_API_CAST"]},
    }


def trail(stack: DevStack, request_id: str) -> list[dict[str, Any]]:
    with AuditReader(stack.audit_path) as log:
        return list(log.query(RecordFilter(request_id=request_id)))


def test_asked_for_the_answer_names_what_the_statement_touched(
    stack: DevStack, status: dict[str, Any], gateway: httpx.Client, person: str
) -> None:
    body = {"statement": CAST, "parameters": {"name": person, "title": "asked"}}
    response = gateway.post(QUERY, json=body, headers=headers(stack, "demo_writer", LINEAGE))
    assert response.status_code == 202, response.text
    answer = response.json()
    request_id = response.headers["X-CypherGate-Request-ID"]
    assert answer["lineage"] == expected(status, request_id)
    assert answer["data"] == {"fields": ["title"], "values": [["asked"]]}
    # The request id finds the statement's records, which name the same labels.
    records = trail(stack, request_id)
    assert [r["event"] for r in records] == ["decision", "outcome"]
    assert records[0]["analysis"]["labels"]["write"] == ["LineageApiMovie"]


def test_not_asked_the_answer_is_the_query_apis(
    stack: DevStack, gateway: httpx.Client, person: str
) -> None:
    body = {"statement": CAST, "parameters": {"name": person, "title": "unasked"}}
    for extra in ({}, {"X-CypherGate-Lineage": "false"}):
        response = gateway.post(QUERY, json=body, headers=headers(stack, "demo_writer", extra))
        assert response.status_code == 202, response.text
        assert set(response.json()) == {"data", "bookmarks"}


def test_a_refused_statement_carries_no_lineage(stack: DevStack, gateway: httpx.Client) -> None:
    body = {"statement": "CREATE (:LineageApiMovie {title: 'refused'})"}
    response = gateway.post(QUERY, json=body, headers=headers(stack, "demo_reader", LINEAGE))
    assert response.status_code == 403
    assert set(response.json()) == {"errors"}
    (record,) = trail(stack, response.headers["X-CypherGate-Request-ID"])
    assert record["decision"]["reasons"] == ["write_not_granted"]


def test_a_bad_header_is_refused_and_recorded(stack: DevStack, gateway: httpx.Client) -> None:
    response = gateway.post(
        QUERY,
        json={"statement": "RETURN 1"},
        headers=headers(stack, "demo_reader", {"X-CypherGate-Lineage": "yes"}),
    )
    assert response.status_code == 400
    assert "X-CypherGate-Lineage must be true or false" in response.json()["errors"][0]["message"]
    (record,) = trail(stack, response.headers["X-CypherGate-Request-ID"])
    assert record["error"]["reason"] == "bad_lineage_header"


def test_each_statement_of_a_transaction_carries_its_own(
    stack: DevStack, status: dict[str, Any], gateway: httpx.Client, person: str
) -> None:
    auth = headers(stack, "demo_writer", LINEAGE)
    first = {"statement": CAST, "parameters": {"name": person, "title": "in-tx"}}
    opened = gateway.post(TX, json=first, headers=auth)
    assert opened.status_code == 202, opened.text
    tx = opened.json()["transaction"]["id"]
    assert opened.json()["lineage"] == expected(status, opened.headers["X-CypherGate-Request-ID"])
    read = {"statement": "MATCH (p:LineageApiPerson) RETURN count(p) AS n"}
    ran = gateway.post(f"{TX}/{tx}", json=read, headers=auth)
    assert ran.status_code == 202, ran.text
    assert ran.json()["lineage"]["labels"] == {"read": ["LineageApiPerson"], "write": []}
    assert ran.json()["lineage"]["request_id"] == ran.headers["X-CypherGate-Request-ID"]
    last = {"statement": CAST, "parameters": {"name": person, "title": "at-commit"}}
    committed = gateway.post(f"{TX}/{tx}/commit", json=last, headers=auth)
    assert committed.status_code == 202, committed.text
    request_id = committed.headers["X-CypherGate-Request-ID"]
    assert committed.json()["lineage"] == expected(status, request_id)
    assert committed.json()["bookmarks"]
