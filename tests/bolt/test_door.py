"""The Bolt door with the official Python driver (sync and async), against the real stack."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import neo4j
import pytest
from neo4j import Driver
from neo4j.exceptions import AuthError, ClientError, Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration


def bolt(status: dict[str, Any], auth: Any, *, scheme: str = "bolt") -> Driver:
    uri = status["gateway_bolt_uri"].replace("bolt://", f"{scheme}://")
    return neo4j.GraphDatabase.driver(uri, auth=auth)


def records(stack: DevStack, marker: str) -> list[dict[str, Any]]:
    """The audit records of statements whose text holds ``marker``."""
    with AuditReader(stack.audit_path) as log:
        decisions = [r for r in log.query(RecordFilter()) if marker in (r.get("statement") or "")]
        ids = {r["request_id"] for r in decisions}
        return [r for r in log.query(RecordFilter()) if r["request_id"] in ids]


def test_status_names_the_bolt_door(status: dict[str, Any]) -> None:
    assert status["gateway_bolt_uri"].startswith("bolt://127.0.0.1:")


def test_autocommit_read_and_write(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    marker = f"bolt-{uuid.uuid4().hex[:8]}"
    with bolt(status, neo4j.bearer_auth(stack.token("demo_writer"))) as writer:
        writer.verify_connectivity()
        with writer.session(database="neo4j") as session:
            result = session.run(
                "CREATE (n:BoltDoor {name: $name, born: $born}) RETURN n.name AS name",
                name=marker,
                born=neo4j.time.Date(1815, 12, 10),
            )
            assert [r["name"] for r in result] == [marker]
            summary = result.consume()
            assert summary.counters.nodes_created == 1
            assert summary.counters.properties_set == 2
            assert session.last_bookmarks()
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as reader,
        reader.session(database="neo4j") as session,
    ):
        record = session.run(
            "MATCH (n:BoltDoor {name: $name}) RETURN n, n.born AS born, 9007199254740993 AS big",
            name=marker,
        ).single()
        assert record is not None
        assert record["n"]["name"] == marker
        assert "BoltDoor" in record["n"].labels
        assert record["born"] == neo4j.time.Date(1815, 12, 10)
        assert record["big"] == 9007199254740993
    found, _, _ = neo4j_admin.execute_query(
        "MATCH (n:BoltDoor {name: $m}) RETURN count(n) AS c", m=marker
    )
    assert found[0]["c"] == 1
    trail = records(stack, "CREATE (n:BoltDoor")
    assert [r["event"] for r in trail][-2:] == ["decision", "outcome"]
    assert trail[-1]["status"] == 202


def test_refused_write_changes_nothing(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as reader,
        reader.session(database="neo4j") as session,
    ):
        with pytest.raises(Neo4jError) as denied:
            session.run("CREATE (:BoltRefused {name: 'Mallory'})").consume()
        assert denied.value.code == "Neo.ClientError.Security.Forbidden"
        assert "write_not_granted" in str(denied.value.message)
        # The connection is usable again after the failure (the driver RESETs it).
        assert session.run("RETURN 1 AS one").data() == [{"one": 1}]
    found, _, _ = neo4j_admin.execute_query("MATCH (n:BoltRefused) RETURN count(n) AS c")
    assert found[0]["c"] == 0
    trail = records(stack, "CREATE (:BoltRefused")
    assert len(trail) == 1 and trail[0]["status"] == 403


def test_garbage_token_is_unauthorized(stack: DevStack, status: dict[str, Any]) -> None:
    with bolt(status, neo4j.bearer_auth("not-a-token")) as driver, pytest.raises(AuthError):
        driver.verify_connectivity()
    with AuditReader(stack.audit_path) as log:
        last = list(log.query(RecordFilter()))[-1]
    assert last["status"] == 401 and last["error"]["reason"] == "malformed_token"


def test_basic_auth_names_the_dag(stack: DevStack, status: dict[str, Any]) -> None:
    token = stack.token("demo_writer")
    with (
        bolt(status, neo4j.basic_auth("demo_writer", token)) as named,
        named.session(database="neo4j") as session,
    ):
        assert session.run("RETURN 2 AS two").data() == [{"two": 2}]
    with bolt(status, neo4j.basic_auth("someone_else", token)) as other:
        with pytest.raises(ClientError) as refused:
            other.verify_connectivity()
        assert refused.value.code == "Neo.ClientError.Security.Forbidden"


def test_routing_uri_and_async_driver(stack: DevStack, status: dict[str, Any]) -> None:
    async def run() -> list[int]:
        uri = status["gateway_bolt_uri"].replace("bolt://", "neo4j://")
        auth = neo4j.bearer_auth(stack.token("demo_reader"))
        async with (
            neo4j.AsyncGraphDatabase.driver(uri, auth=auth) as driver,
            driver.session(database="neo4j", default_access_mode=neo4j.READ_ACCESS) as session,
        ):
            result = await session.run("UNWIND range(1, 1000) AS i RETURN i", fetch_size=7)
            return [record["i"] async for record in result]

    assert asyncio.run(run()) == list(range(1, 1001))


def test_impersonation_is_refused(stack: DevStack, status: dict[str, Any]) -> None:
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j", impersonated_user="neo4j") as session,
        pytest.raises(Neo4jError) as refused,
    ):
        session.run("RETURN 1").consume()
    assert refused.value.code == "Neo.ClientError.Security.Forbidden"
