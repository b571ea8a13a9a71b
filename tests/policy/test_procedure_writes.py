"""A procedure that writes is a write the plan cannot see: of anything, on both doors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import neo4j
import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data

pytestmark = pytest.mark.integration

SET_VECTOR = "MATCH (m:Movie {title: $title}) CALL db.create.setNodeVectorProperty(m, 'v', [1.0])"


def _grant_procedures(data: dict[str, Any]) -> None:
    dags = data["cyphergate"]["grants"]["dags"]
    # Reads everything (what db.labels yields is anything), writes :Person only, and may call a
    # procedure that reads and one that writes.
    grant = dags["demo_labels"]["databases"]["neo4j"]
    grant["read"] = {"labels": ["*"], "relationship_types": ["*"]}
    grant["procedures"] = ["db.labels", "db.create.setNodeVectorProperty"]
    dags["demo_writer"]["databases"]["neo4j"]["procedures"] = ["db.create.setNodeVectorProperty"]


@pytest.fixture
def movie(neo4j_admin: Driver) -> Iterator[str]:
    title = f"procedure-{uuid.uuid4().hex[:8]}"
    neo4j_admin.execute_query("CREATE (:Movie {title: $t})", t=title)
    try:
        yield title
    finally:
        neo4j_admin.execute_query(
            "MATCH (n) WHERE n.title = $t OR n.name = $t DETACH DELETE n", t=title
        )


def _over_http(
    stack: DevStack, status: dict[str, Any], dag: str, statement: str, title: str
) -> httpx.Response:
    return httpx.post(
        f"{status['gateway_url']}/db/neo4j/query/v2",
        json={"statement": statement, "parameters": {"title": title}},
        headers={"Authorization": stack.auth_header(dag)},
        timeout=30,
    )


def _vector(neo4j_admin: Driver, title: str) -> Any:
    records, _, _ = neo4j_admin.execute_query(
        "MATCH (m:Movie {title: $t}) RETURN m.v AS v", t=title
    )
    return records[0]["v"]


def test_a_procedure_that_writes_writes_anything(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, movie: str
) -> None:
    """db.create.setNodeVectorProperty sets a property of the node it is handed: a grant that
    writes :Person only set a :Movie's through it, where SET m.v is label_write_not_granted."""
    with changed_policy_data(stack, _grant_procedures):
        refused = _over_http(stack, status, "demo_labels", SET_VECTOR, movie)
        assert refused.status_code == 403, refused.text
        assert "label_write_not_granted:*" in refused.json()["errors"][0]["message"]
        auth = neo4j.bearer_auth(stack.token("demo_labels"))
        with (
            neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
            driver.session(database="neo4j") as session,
            pytest.raises(neo4j.exceptions.ClientError) as over_bolt,
        ):
            session.run(SET_VECTOR, title=movie).consume()
        assert over_bolt.value.code == "Neo.ClientError.Security.Forbidden"
        assert _vector(neo4j_admin, movie) is None
        # A procedure Neo4j declares READ writes nothing: the statement's own write is decided.
        reads = "CALL db.labels() YIELD label WITH count(*) AS n CREATE (:Person {name: $title})"
        allowed = _over_http(stack, status, "demo_labels", reads, movie)
        assert allowed.status_code == 202, allowed.text
        # A grant that writes anything may call it.
        written = _over_http(stack, status, "demo_writer", SET_VECTOR, movie)
        assert written.status_code == 202, written.text
    assert _vector(neo4j_admin, movie) == [1.0]


def _grant_schema_and_procedures(data: dict[str, Any]) -> None:
    # Reads everything, writes nothing; may run schema statements and call both procedures.
    grant = data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]["neo4j"]
    grant.update(schema=True, procedures=["db.create.setNodeVectorProperty", "tx.setMetaData"])


def test_a_procedure_that_writes_beside_one_of_the_dbms_writes_too(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, movie: str
) -> None:
    """Neo4j types a statement that calls a DBMS procedure (tx.setMetaData) "s", whatever else
    it calls: a grant with no write at all wrote a :Movie's property beside one."""
    statement = SET_VECTOR + " CALL tx.setMetaData({})"
    with changed_policy_data(stack, _grant_schema_and_procedures):
        refused = _over_http(stack, status, "demo_reader", statement, movie)
        assert refused.status_code == 403, refused.text
        assert "write_not_granted" in refused.json()["errors"][0]["message"]
    assert _vector(neo4j_admin, movie) is None
