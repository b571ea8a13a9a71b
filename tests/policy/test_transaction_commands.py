"""SHOW and TERMINATE TRANSACTIONS are about every transaction of the server, on both doors."""

from __future__ import annotations

from typing import Any

import httpx
import neo4j
import pytest

from proxy.devstack.stack import DevStack
from tests.conftest import changed_policy_data

pytestmark = pytest.mark.integration

SHOW = "SHOW TRANSACTIONS YIELD database, currentQuery, parameters, metaData"


def _grant_show_transactions(data: dict[str, Any]) -> None:
    dags = data["cyphergate"]["grants"]["dags"]
    # Reads Person and Movie only, and may list transactions on its database.
    dags["demo_labels"]["databases"]["neo4j"]["commands"] = ["ShowTransactions"]
    # Reads everything, and holds the command on every database too.
    reader = dags["demo_reader"]["databases"]
    reader["neo4j"]["commands"] = ["ShowTransactions"]
    reader["*"] = {"commands": ["ShowTransactions"]}


def _over_http(stack: DevStack, status: dict[str, Any], dag: str) -> httpx.Response:
    return httpx.post(
        f"{status['gateway_url']}/db/neo4j/query/v2",
        json={"statement": SHOW},
        headers={"Authorization": stack.auth_header(dag)},
        timeout=30,
    )


def test_showing_transactions_reads_what_every_transaction_does(
    stack: DevStack, status: dict[str, Any]
) -> None:
    """SHOW TRANSACTIONS lists the statements and parameters of every DAG's transactions (the
    values they write to labels a grant may not read) and of every database's (system's, where
    the gateway administers the DAGs' users): a command grant on one database, with a label
    grant, is not enough."""
    with changed_policy_data(stack, _grant_show_transactions):
        refused = _over_http(stack, status, "demo_labels")
        assert refused.status_code == 403, refused.text
        message = refused.json()["errors"][0]["message"]
        assert "database_not_granted:*" in message and "label_not_granted:*" in message
        auth = neo4j.bearer_auth(stack.token("demo_labels"))
        with (
            neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
            driver.session(database="neo4j") as session,
            pytest.raises(neo4j.exceptions.ClientError) as over_bolt,
        ):
            session.run(SHOW).consume()
        assert over_bolt.value.code == "Neo.ClientError.Security.Forbidden"
        assert "database_not_granted:*" in str(over_bolt.value.message)
        # A grant that reads everything and holds the command everywhere may list them.
        allowed = _over_http(stack, status, "demo_reader")
        assert allowed.status_code == 202, allowed.text
