"""Through the real gateway: a write that a uniqueness constraint compares with other nodes
reads the constraint's label (as any label, unless the statement names it), so a grant that may
not read it is refused the write (its failing or not would tell whether some node of that label
holds the value)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data

pytestmark = pytest.mark.integration


@pytest.fixture
def account_email_unique(neo4j_admin: Driver) -> Iterator[str]:
    """An admin's constraint on a label demo_labels may not read, and a node that is both a
    Person (which it reads and writes) and an Account."""
    tag = uuid.uuid4().hex[:10]
    name = f"account_email_{tag}"
    neo4j_admin.execute_query(f"CREATE CONSTRAINT {name} FOR (a:Account) REQUIRE a.email IS UNIQUE")
    neo4j_admin.execute_query(
        "CREATE (:Person:Account {name: $n}), (:Account {email: 'ceo@corp.example'})",
        n=f"both {tag}",
    )
    yield tag
    neo4j_admin.execute_query(
        "MATCH (a:Account) WHERE a.name = $n OR a.email = 'ceo@corp.example' DETACH DELETE a",
        n=f"both {tag}",
    )
    neo4j_admin.execute_query(f"DROP CONSTRAINT {name}")


def test_a_write_a_constraint_compares_reads_its_label(
    stack: DevStack, gateway: httpx.Client, account_email_unique: str
) -> None:
    header = {"Authorization": stack.auth_header("demo_labels")}
    name = f"both {account_email_unique}"
    for statement in (
        "MATCH (p:Person {name: $n}) SET p.email = $e",
        "MATCH (p:Person {name: $n}) SET p += {email: $e}",
        "CREATE (:Person {name: $n, email: $e})",
    ):
        answer = gateway.post(
            "/db/neo4j/query/v2",
            json={"statement": statement, "parameters": {"n": name, "e": "ceo@corp.example"}},
            headers=header,
        )
        assert answer.status_code == 403, (statement, answer.text)
        request_id = answer.headers["x-cyphergate-request-id"]
        with AuditReader(stack.audit_path) as log:
            (record,) = log.query(RecordFilter(request_id=request_id))
        # Read as any label: the refusal, which the caller is shown, names no label it did not.
        assert "*" in record["analysis"]["labels"]["read"], record["analysis"]
        assert "label_not_granted:*" in record["decision"]["reasons"]
        assert "Account" not in answer.text, answer.text
    # A write no constraint compares is the grant's as before.
    allowed = gateway.post(
        "/db/neo4j/query/v2",
        json={
            "statement": "MATCH (p:Person {name: $n}) SET p.nickname = 'x'",
            "parameters": {"n": name},
        },
        headers=header,
    )
    assert allowed.status_code == 202, allowed.text


def _write_acted_in(data: dict[str, Any]) -> None:
    """demo_labels may also write ACTED_IN relationships (it reads them already)."""
    grant = data["cyphergate"]["grants"]["dags"]["demo_labels"]["databases"]["neo4j"]
    grant["write"]["relationship_types"] = ["ACTED_IN"]


@pytest.fixture
def acted_in_ref_unique(neo4j_admin: Driver) -> Iterator[str]:
    """An admin's uniqueness constraint on a relationship type demo_labels reads, and one
    relationship of that type from a Person it reads to an Account it may not read, holding the
    value the constraint compares."""
    tag = uuid.uuid4().hex[:10]
    neo4j_admin.execute_query(
        f"CREATE CONSTRAINT acted_ref_{tag} FOR ()-[r:ACTED_IN]-() REQUIRE r.ref_{tag} IS UNIQUE"
    )
    neo4j_admin.execute_query(
        f"CREATE (p:Person {{name: $n}})-[:ACTED_IN {{ref_{tag}: 'hidden-ref'}}]->"
        "(:Account {name: $n}), (p)-[:ACTED_IN]->(:Movie {title: $n})",
        n=f"ref {tag}",
    )
    yield tag
    neo4j_admin.execute_query("MATCH (n {name: $n}) DETACH DELETE n", n=f"ref {tag}")
    neo4j_admin.execute_query("MATCH (n:Movie {title: $n}) DETACH DELETE n", n=f"ref {tag}")
    neo4j_admin.execute_query(f"DROP CONSTRAINT acted_ref_{tag}")


def test_a_write_a_relationship_constraint_compares_reads_every_label(
    stack: DevStack, gateway: httpx.Client, acted_in_ref_unique: str
) -> None:
    """A relationship constraint compares a write with every relationship of its type, those at
    nodes the grant may not read too (Neo4j's own READ hides a relationship whose end it may not
    traverse): whether `SET r.ref = 'hidden-ref'` failed would tell what the ACTED_IN to the
    Account holds. So such a write reads nodes of any label, and a label grant is refused it."""
    tag = acted_in_ref_unique
    header = {"Authorization": stack.auth_header("demo_labels")}
    parameters = {"n": f"ref {tag}", "g": "hidden-ref"}
    with changed_policy_data(stack, _write_acted_in):
        for statement in (
            f"MATCH (p:Person {{name: $n}})-[r:ACTED_IN]->(m:Movie) SET r.ref_{tag} = $g",
            f"MATCH (p:Person {{name: $n}})-[r:ACTED_IN]->(m:Movie) SET r += {{ref_{tag}: $g}}",
            f"MATCH (p:Person {{name: $n}}), (m:Movie {{title: $n}})"
            f" CREATE (p)-[:ACTED_IN {{ref_{tag}: $g}}]->(m)",
        ):
            answer = gateway.post(
                "/db/neo4j/query/v2",
                json={"statement": statement, "parameters": parameters},
                headers=header,
            )
            assert answer.status_code == 403, (statement, answer.text)
            request_id = answer.headers["x-cyphergate-request-id"]
            with AuditReader(stack.audit_path) as log:
                (record,) = log.query(RecordFilter(request_id=request_id))
            assert "label_not_granted:*" in record["decision"]["reasons"], record["decision"]
        # A write to a key no constraint compares stays the grant's.
        allowed = gateway.post(
            "/db/neo4j/query/v2",
            json={
                "statement": "MATCH (p:Person {name: $n})-[r:ACTED_IN]->(m:Movie) SET r.seen = 1",
                "parameters": {"n": f"ref {tag}"},
            },
            headers=header,
        )
        assert allowed.status_code == 202, allowed.text


@pytest.fixture
def hidden_label_unique(neo4j_admin: Driver) -> Iterator[str]:
    """A uniqueness constraint on a label no node demo_labels may read carries, and a
    relationship type's likewise: their names are not demo_labels' to learn."""
    tag = uuid.uuid4().hex[:10]
    neo4j_admin.execute_query(
        f"CREATE CONSTRAINT hidden_{tag} FOR (h:Hidden{tag}) REQUIRE h.code IS UNIQUE"
    )
    neo4j_admin.execute_query(
        f"CREATE CONSTRAINT tied_{tag} FOR ()-[t:TIED{tag}]-() REQUIRE t.code IS UNIQUE"
    )
    yield tag
    neo4j_admin.execute_query(f"DROP CONSTRAINT hidden_{tag}")
    neo4j_admin.execute_query(f"DROP CONSTRAINT tied_{tag}")


def test_a_refusal_for_a_constraint_names_no_label_the_statement_does_not(
    stack: DevStack, gateway: httpx.Client, hidden_label_unique: str
) -> None:
    """The policy's reasons reach the caller: a write refused because a constraint on a label or
    type it does not name compares it is refused as reading any (`label_not_granted:*`), never
    by the constraint's label or type, which would list them (SHOW CONSTRAINTS needs a read of
    `*`). A constraint on the label the statement writes is still read by name."""
    tag = hidden_label_unique
    header = {"Authorization": stack.auth_header("demo_labels")}
    for statement, parameters in (
        ("MATCH (p:Person) WHERE p.name = $n SET p += $m", {"n": "nobody", "m": {"x": 1}}),
        ("MATCH (p:Person) WHERE p.name = $n SET p.code = 1", {"n": "nobody"}),
    ):
        answer = gateway.post(
            "/db/neo4j/query/v2",
            json={"statement": statement, "parameters": parameters},
            headers=header,
        )
        assert answer.status_code == 403, (statement, answer.text)
        assert tag not in answer.text, answer.text
        request_id = answer.headers["x-cyphergate-request-id"]
        with AuditReader(stack.audit_path) as log:
            (record,) = log.query(RecordFilter(request_id=request_id))
        assert "label_not_granted:*" in record["decision"]["reasons"], record["decision"]
        assert not [r for r in record["decision"]["reasons"] if tag in r], record["decision"]
