"""Through the real gateway: a write that a uniqueness constraint compares with other nodes
reads the constraint's label, so a grant that may not read it is refused the write (its failing
or not would tell whether some node of that label holds the value)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

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
        assert "Account" in record["analysis"]["labels"]["read"], record["analysis"]
        assert "label_not_granted:Account" in record["decision"]["reasons"]
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
