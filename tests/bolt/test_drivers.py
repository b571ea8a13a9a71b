"""The Bolt door with the official JavaScript, Go and Java drivers and Neo4j's cypher-shell,
each unchanged but for its URI and credential (the clients of ``tests/drivers/``)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from neo4j import Driver

from proxy.devstack.stack import DevStack
from tests.bolt.test_door import short_lived_token
from tests.drivers.clients import LANGUAGES, Outcome, basic, bearer, run_client, run_cypher_shell

pytestmark = pytest.mark.integration

FORBIDDEN = "Neo.ClientError.Security.Forbidden"
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"


def by_name(outcomes: list[Outcome]) -> dict[str, Outcome]:
    return {o["name"]: o for o in outcomes}


@pytest.mark.parametrize("language", LANGUAGES)
def test_driver_through_the_bolt_door(
    language: str, stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    uri = status["gateway_bolt_uri"]
    tag = f"{language}-{uuid.uuid4().hex[:8]}"

    def create(n: int) -> dict[str, Any]:
        return {
            "statement": "CREATE (x:BoltDriver {tag: $tag, n: $n}) RETURN x.n AS n",
            "params": {"tag": tag, "n": n},
        }

    count = {
        "statement": "MATCH (x:BoltDriver {tag: $tag}) RETURN count(x) AS c",
        "params": {"tag": tag},
    }
    ordered = {
        "statement": "MATCH (x:BoltDriver {tag: $tag}) RETURN x.n AS n ORDER BY n",
        "params": {"tag": tag},
    }
    writer_steps: list[dict[str, Any]] = [
        {"step": "verify_connectivity"},
        {"step": "autocommit", "name": "read", "statement": "RETURN 1 AS one, 'é' AS s"},
        {"step": "autocommit", "name": "write", **create(1)},
        {"step": "execute_query", "name": "execute_query", **create(2)},
        {"step": "write_tx", "name": "managed", "statements": [create(3), create(4)]},
        {"step": "write_tx", "name": "explicit", "explicit": True, "statements": [create(5)]},
        {"step": "rollback_tx", "name": "rolled back", "statements": [create(6), count]},
        {"step": "read_tx", "name": "read_tx", "statements": [ordered]},
    ]
    writer = by_name(run_client(language, uri, bearer(stack.token("demo_writer")), writer_steps))
    assert {name: o.get("error_code") for name, o in writer.items() if not o["ok"]} == {}
    assert writer["read"]["rows"] == [{"one": 1, "s": "é"}]
    assert writer["write"]["rows"] == [{"n": 1}]
    assert writer["execute_query"]["rows"] == [{"n": 2}]
    assert writer["managed"]["rows"] == [[{"n": 3}], [{"n": 4}]]
    assert writer["explicit"]["rows"] == [[{"n": 5}]]
    assert writer["rolled back"]["rows"] == [[{"n": 6}], [{"c": 6}]]
    assert writer["read_tx"]["rows"] == [[{"n": n} for n in (1, 2, 3, 4, 5)]]
    assert writer["write"].get("bookmarks")
    stored, _, _ = neo4j_admin.execute_query(
        "MATCH (x:BoltDriver {tag: $tag}) RETURN x.n AS n ORDER BY n", tag=tag
    )
    assert [r["n"] for r in stored] == [1, 2, 3, 4, 5]

    reader_steps: list[dict[str, Any]] = [
        {"step": "autocommit", "name": "refused", **create(9)},
        {"step": "write_tx", "name": "refused in tx", "statements": [count, create(9)]},
    ]
    reader = by_name(run_client(language, uri, bearer(stack.token("demo_reader")), reader_steps))
    assert reader["refused"]["error_code"] == FORBIDDEN
    assert reader["refused in tx"]["error_code"] == FORBIDDEN

    routed = run_client(
        language,
        uri.replace("bolt://", "neo4j://"),
        basic("demo_reader", stack.token("demo_reader")),
        [{"step": "execute_query", "statement": "RETURN 3 AS three", "routing": "read"}],
    )
    assert routed[0]["rows"] == [{"three": 3}], routed

    garbage = run_client(language, uri, bearer("garbage"), [{"step": "verify_connectivity"}])
    assert garbage[0]["error_code"] == UNAUTHORIZED, garbage
    left, _, _ = neo4j_admin.execute_query(
        "MATCH (x:BoltDriver {tag: $tag, n: 9}) RETURN count(x) AS c", tag=tag
    )
    assert left[0]["c"] == 0


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_token_expiring_on_an_open_connection_is_refreshed(
    language: str, stack: DevStack, status: dict[str, Any]
) -> None:
    """The first statement connects with a token that then expires while the connection stays
    open; the next gets TokenExpired and the driver's bearer auth manager fetches a new one."""
    expiring = short_lived_token(stack, "demo_writer", seconds=6)
    step = {
        "step": "expired_token_refresh",
        "tokens": [expiring, stack.token("demo_writer")],
        "statement": "RETURN 7 AS seven",
        "pause_ms": 7000,
    }
    (refreshed,) = run_client(language, status["gateway_bolt_uri"], bearer(expiring), [step])
    assert refreshed["ok"], refreshed
    assert refreshed["rows"] == [{"seven": 7}]
    assert refreshed.get("security_codes") == ["Neo.ClientError.Security.TokenExpired"]


def test_cypher_shell_through_the_bolt_door(stack: DevStack, status: dict[str, Any]) -> None:
    uri = status["gateway_bolt_uri"]
    token = stack.token("demo_reader")
    answered = run_cypher_shell(uri, "demo_reader", token, "RETURN 40 + 2 AS answer")
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == ["answer", "42"]
    refused = run_cypher_shell(uri, "demo_reader", token, "CREATE (:ShellRefused)")
    assert refused.returncode != 0
    assert "write_not_granted" in refused.stderr, refused.stderr


def test_cypher_shell_for_a_dag_that_reads_some_labels(
    stack: DevStack, status: dict[str, Any]
) -> None:
    """cypher-shell calls db.ping() as it connects, which the policy lets any DAG call: one
    whose grant reads :Person and :Movie only was refused it as reading any label, so it could
    not use cypher-shell at all."""
    token = stack.token("demo_labels")
    statement = "MATCH (p:Person) RETURN count(p) > -1 AS answered"
    answered = run_cypher_shell(status["gateway_bolt_uri"], "demo_labels", token, statement)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.split() == ["answered", "TRUE"]
