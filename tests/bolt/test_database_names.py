"""Which database a Bolt ``RUN``, ``BEGIN`` or ``ROUTE`` acts on, against the real stack: its
``db`` as Neo4j reads it (case-insensitive, in lower case), decided before a transaction
opens."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec.packstream import Structure
from proxy.devstack.stack import DevStack
from tests.bolt.test_extra import refusal_records
from tests.bolt.test_wire import Peer, failure, logged_on, peer, straight_to_neo4j

pytestmark = pytest.mark.integration
__all__ = ["peer"]  # a fixture, used by name

RUN, BEGIN, COMMIT, RESET, PULL, ROUTE = 0x10, 0x11, 0x12, 0x0F, 0x3F, 0x66
SUCCESS, RECORD = b"\x70", b"\x71"
FORBIDDEN = "Neo.ClientError.Security.Forbidden"


def succeeded(answer: Structure | None) -> dict[str, Any]:
    assert answer is not None and answer.tag == SUCCESS, answer
    metadata: dict[str, Any] = answer.fields[0]
    return metadata


def ran_on(client: Peer, extra: dict[str, Any]) -> str:
    """The database ``CALL db.info()`` reports, run auto-commit with ``extra``."""
    client.message(RUN, "CALL db.info() YIELD name", {}, extra)
    succeeded(client.answer())
    client.message(PULL, {"n": -1})
    row = client.answer()
    assert row is not None and row.tag == RECORD, row
    succeeded(client.answer())
    name: str = row.fields[0][0]
    return name


@pytest.mark.parametrize("asked", ["NEO4J", "Neo4j", "neo4j"])
def test_a_db_named_in_any_case_runs_where_neo4j_runs_it_and_is_recorded_so(
    stack: DevStack, status: dict[str, Any], peer: Peer, neo4j_admin: Driver, asked: str
) -> None:
    """Found by review: ``db: "NEO4J"`` was refused ``database_not_granted:NEO4J`` while Neo4j
    runs it on ``neo4j``. Now it is decided, recorded and run as ``neo4j``, the database Neo4j
    itself runs it on, and a ``BEGIN``'s so too; a ``ROUTE`` answers with the name as asked,
    as Neo4j does."""
    neo4j = straight_to_neo4j(status)
    try:
        assert ran_on(neo4j, {"db": asked}) == "neo4j"
        neo4j.message(ROUTE, {}, [], {"db": asked})
        neo4j_route = succeeded(neo4j.answer())["rt"]
    finally:
        neo4j.close()
    logged_on(peer, stack.token("demo_writer"))
    label = "T" + uuid.uuid4().hex[:12]
    pulled(peer, f"CREATE (:`{label}`)", {"db": asked})
    assert {r["database"] for r in _records_of_text(stack, label)} == {"neo4j"}
    peer.message(BEGIN, {"db": asked})
    succeeded(peer.answer())
    pulled(peer, f"CREATE (:`{label}`)", {})
    peer.message(COMMIT)
    succeeded(peer.answer())
    found, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS n")
    assert found[0]["n"] == 2
    peer.message(ROUTE, {}, [], {"db": asked})
    assert succeeded(peer.answer())["rt"]["db"] == neo4j_route["db"]  # as asked, as Neo4j


def pulled(client: Peer, text: str, extra: dict[str, Any]) -> None:
    client.message(RUN, text, {}, extra)
    succeeded(client.answer())
    client.message(PULL, {"n": -1})
    while (answer := client.answer()) is not None and answer.tag == RECORD:
        pass
    succeeded(answer)


def _records_of_text(stack: DevStack, text: str) -> list[dict[str, Any]]:
    with AuditReader(stack.audit_path) as log:
        decision = next(log.query(RecordFilter(text=text)))
        return list(log.query(RecordFilter(request_id=decision["request_id"])))


@pytest.mark.parametrize("asked", ["system", "SYSTEM"])
def test_a_begin_on_a_database_without_a_grant_is_refused_and_holds_nothing(
    stack: DevStack, status: dict[str, Any], asked: str
) -> None:
    """Found by review: ``BEGIN {"db": "system"}`` succeeded (no decision, no record) and its
    first statement was then refused, while it held one of its identity's transaction slots.
    Now the ``BEGIN`` is refused as its statement would be, recorded once, and holds nothing:
    as many refused as the identity has slots (each on its connection, still open) leave it
    free to begin one it may."""
    token = stack.token("demo_writer")
    port = int(status["gateway_bolt_uri"].rsplit(":", 1)[1])
    peers = [logged_on(Peer(port), token) for _ in range(17)]  # max_transactions_per_identity
    try:
        for client in peers[:16]:
            client.message(BEGIN, {"db": asked})
            answer = client.answer()
            assert failure(answer) == FORBIDDEN
            (record,) = refusal_records(stack, answer)
            assert (record["status"], record["database"]) == (403, "system")
            assert "database_not_granted:system" in record["decision"]["reasons"]
            client.message(RESET)
            succeeded(client.answer())
        last = peers[16]
        last.message(BEGIN, {"db": "neo4j"})
        succeeded(last.answer())
        pulled(last, "RETURN 1", {})
        last.message(COMMIT)
        succeeded(last.answer())
    finally:
        for client in peers:
            client.close()
