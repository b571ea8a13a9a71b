"""The zero-code path: the official neo4j driver, pointed at the gateway with an http:// URI.

The driver speaks Neo4j's Query API (typed JSON) over HTTP. Through CypherGate, auto-commit
statements (``session.run``) work with bearer authentication; explicit transactions
(``execute_query``, ``execute_read``/``execute_write``, ``begin_transaction``) are refused with
a clear error, since every statement must be decided and audited on its own.
"""

from __future__ import annotations

from typing import Any

import neo4j
import pytest
from neo4j import Driver
from neo4j.exceptions import Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

pytestmark = [
    pytest.mark.integration,
    # The driver's Query API support is a preview, and says so with a warning on every driver.
    pytest.mark.filterwarnings("ignore::neo4j.warnings.PreviewWarning"),
]


def driver(status: dict[str, Any], token: str) -> Driver:
    return neo4j.GraphDatabase.driver(status["gateway_url"], auth=neo4j.bearer_auth(token))


def test_session_run_through_the_gateway(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
    ):
        summary = session.run(
            "CREATE (n:DriverOverHttp {name: $name, born: $born}) RETURN n.name AS name",
            name="Ada",
            born=neo4j.time.Date(1815, 12, 10),
        )
        assert [record["name"] for record in summary] == ["Ada"]
    with (
        driver(status, stack.token("demo_reader")) as reader,
        reader.session(database="neo4j") as session,
    ):
        record = session.run(
            "MATCH (n:DriverOverHttp) RETURN n, n.born AS born, 9007199254740993 AS big"
        ).single()
        assert record is not None
        assert record["n"]["name"] == "Ada"
        assert record["born"] == neo4j.time.Date(1815, 12, 10)
        assert record["big"] == 9007199254740993
        with pytest.raises(Neo4jError) as denied:
            session.run("CREATE (:DriverOverHttp {name: 'Mallory'})").consume()
        assert denied.value.code == "Neo.ClientError.Security.Forbidden"
        assert "write_not_granted" in str(denied.value.message)
    names, _, _ = neo4j_admin.execute_query("MATCH (n:DriverOverHttp) RETURN n.name AS name")
    assert [r["name"] for r in names] == ["Ada"]


def test_explicit_transactions_are_refused_clearly(stack: DevStack, status: dict[str, Any]) -> None:
    with driver(status, stack.token("demo_reader")) as reader:
        with pytest.raises(Neo4jError) as refused:
            reader.execute_query("RETURN 1", database_="neo4j")
        assert "explicit transactions" in str(refused.value.message)
    with AuditReader(stack.audit_path) as log:
        refusals = [
            r
            for r in log.query(RecordFilter())
            if (r.get("error") or {}).get("reason") == "explicit_transaction"
        ]
    assert refusals and refusals[-1]["status"] == 501
