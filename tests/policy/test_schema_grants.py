"""Through the real gateway: a schema grant is no wider than the DAG's write grant.

An index or constraint is about a label or relationship type (a uniqueness constraint on another
team's label makes that team's writes fail; dropping one lets duplicates in), and a ``DROP ...
name`` names none at all. The plan reader does not read the label from a schema command's details:
every CREATE or DROP of an index or constraint writes any label, type and property (``*``), so
``schema: true`` and the command grants allow it only beside a write grant of ``*``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import neo4j
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data

pytestmark = pytest.mark.integration

SCHEMA_COMMANDS = [
    "CreateIndex",
    "DropIndex",
    "CreateConstraint",
    "DropConstraint",
    "DoNothingIfExists",
    "ShowIndexes",
    "ShowConstraints",
]

# Another team's schema, made by an administrator: demo_labels may not write :Account or :OWNS.
ADMIN_SCHEMA = (
    "CREATE CONSTRAINT hb_account_number IF NOT EXISTS FOR (a:Account) REQUIRE a.number IS UNIQUE",
    "CREATE INDEX hb_account_name IF NOT EXISTS FOR (a:Account) ON (a.name)",
    "CREATE INDEX hb_owns_since IF NOT EXISTS FOR ()-[r:OWNS]-() ON (r.since)",
)

# Each is refused to demo_labels although it holds `schema` and every schema command: whatever
# label it names, the granted :Person included, and by name, where it names none.
OUT_OF_GRANT = [
    "CREATE INDEX hb_x FOR (a:Account) ON (a.email)",
    "CREATE INDEX hb_x IF NOT EXISTS FOR (a:Account) ON (a.email)",
    "CREATE RANGE INDEX hb_x FOR (a:Account) ON (a.email)",
    "CREATE TEXT INDEX hb_x FOR (a:Account) ON (a.email)",
    "CREATE POINT INDEX hb_x FOR (a:Account) ON (a.location)",
    "CREATE FULLTEXT INDEX hb_x FOR (a:Account) ON EACH [a.email]",
    "CREATE VECTOR INDEX hb_x FOR (a:Account) ON (a.embedding)",
    "CREATE LOOKUP INDEX hb_x IF NOT EXISTS FOR (n) ON EACH labels(n)",
    "CREATE INDEX hb_x FOR ()-[r:OWNS]-() ON (r.since)",
    "CREATE FULLTEXT INDEX hb_x FOR ()-[r:OWNS]-() ON EACH [r.note]",
    "CREATE CONSTRAINT hb_x FOR (a:Account) REQUIRE a.email IS UNIQUE",
    "CREATE CONSTRAINT hb_x IF NOT EXISTS FOR (a:Account) REQUIRE a.email IS UNIQUE",
    "CREATE CONSTRAINT hb_x FOR ()-[r:OWNS]-() REQUIRE r.id IS UNIQUE",
    "CREATE INDEX hb_x FOR (p:Person) ON (p.email)",
    "CREATE CONSTRAINT hb_x FOR (p:Person) REQUIRE p.email IS UNIQUE",
    "DROP INDEX hb_account_name",
    "DROP INDEX hb_owns_since IF EXISTS",
    "DROP CONSTRAINT hb_account_number",
    "DROP CONSTRAINT hb_account_number IF EXISTS",
]


def _grant_schema(data: dict[str, Any]) -> None:
    dags = data["cyphergate"]["grants"]["dags"]
    for dag in ("demo_labels", "demo_writer"):
        database = dags[dag]["databases"]["neo4j"]
        database.update(schema=True, commands=SCHEMA_COMMANDS)


def _schema(driver: Driver) -> list[str]:
    indexes, _, _ = driver.execute_query("SHOW INDEXES YIELD name RETURN name")
    constraints, _, _ = driver.execute_query("SHOW CONSTRAINTS YIELD name RETURN name")
    return sorted(r["name"] for r in [*indexes, *constraints])


@pytest.fixture(scope="module")
def schema_granted(stack: DevStack, neo4j_admin: Driver) -> Iterator[list[str]]:
    """The admin's schema in place and schema grants served; the schema as it was, yielded."""
    for statement in ADMIN_SCHEMA:
        neo4j_admin.execute_query(statement)
    try:
        with changed_policy_data(stack, _grant_schema):
            yield _schema(neo4j_admin)
    finally:
        for name in ("hb_x", "hb_account_name", "hb_owns_since"):
            neo4j_admin.execute_query(f"DROP INDEX {name} IF EXISTS")
        for name in ("hb_x", "hb_account_number"):
            neo4j_admin.execute_query(f"DROP CONSTRAINT {name} IF EXISTS")


def _post(stack: DevStack, gateway: httpx.Client, dag: str, statement: str) -> httpx.Response:
    return gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header(dag)},
    )


@pytest.mark.parametrize("statement", OUT_OF_GRANT)
def test_a_schema_grant_stays_within_the_write_grant(
    stack: DevStack,
    gateway: httpx.Client,
    neo4j_admin: Driver,
    schema_granted: list[str],
    statement: str,
) -> None:
    answer = _post(stack, gateway, "demo_labels", statement)
    assert answer.status_code == 403, answer.text
    request_id = answer.headers["x-cyphergate-request-id"]
    with AuditReader(stack.audit_path) as log:
        (record,) = log.query(RecordFilter(request_id=request_id))
    assert record["analysis"]["query_type"] == "s", record["analysis"]
    reasons = record["decision"]["reasons"]
    # The schema grant and the commands are there: the label is what refuses it.
    assert "schema_not_granted" not in reasons and "label_write_not_granted:*" in reasons, reasons
    assert not any(r.startswith("command_not_granted:") for r in reasons), reasons
    assert "relationship_type_write_not_granted:*" in reasons, reasons
    assert _schema(neo4j_admin) == schema_granted


def test_over_bolt_too(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, schema_granted: list[str]
) -> None:
    auth = neo4j.bearer_auth(stack.token("demo_labels"))
    with neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver:
        for statement in ("DROP CONSTRAINT hb_account_number", "DROP INDEX hb_owns_since"):
            with (
                driver.session(database="neo4j") as session,
                pytest.raises(neo4j.exceptions.ClientError) as refused,
            ):
                session.run(statement).consume()
            assert refused.value.code == "Neo.ClientError.Security.Forbidden"
            assert "label_write_not_granted:*" in str(refused.value.message)
    assert _schema(neo4j_admin) == schema_granted


def test_a_grant_that_writes_everything_may_change_the_schema(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver, schema_granted: list[str]
) -> None:
    """Least privilege, not no privilege: the same statements run for a write grant of ``*``."""
    for statement in (
        "CREATE INDEX hb_x IF NOT EXISTS FOR (a:Account) ON (a.email)",
        "DROP INDEX hb_x",
    ):
        answer = _post(stack, gateway, "demo_writer", statement)
        assert answer.status_code == 202, answer.text
    assert _schema(neo4j_admin) == schema_granted


@pytest.mark.parametrize("statement", ["SHOW INDEXES", "SHOW CONSTRAINTS YIELD name"])
def test_showing_the_schema_reads_every_label(
    stack: DevStack, gateway: httpx.Client, schema_granted: list[str], statement: str
) -> None:
    """SHOW INDEXES and SHOW CONSTRAINTS list every index and constraint: the labels, types and
    keys each is on, and how often and when it was last read. With the command granted, a grant
    that reads :Person and :Movie only is still refused; one that reads everything is not."""
    del schema_granted
    refused = _post(stack, gateway, "demo_labels", statement)
    assert refused.status_code == 403, refused.text
    message = refused.json()["errors"][0]["message"]
    assert "label_not_granted:*" in message and "relationship_type_not_granted:*" in message
    assert "command_not_granted" not in message
    shown = _post(stack, gateway, "demo_writer", statement)
    assert shown.status_code == 202, shown.text
    names = [
        row[shown.json()["data"]["fields"].index("name")] for row in shown.json()["data"]["values"]
    ]
    assert "hb_account_number" in names
    unlisted = _post(stack, gateway, "demo_reader", statement)  # no command grant
    assert unlisted.status_code == 403, unlisted.text
