"""``neo4j.bolt_relay = false``: the Bolt door's statements run on the official driver instead of
the gateway's own connections (a cluster a ``neo4j://`` URI routes), with the same answers."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import neo4j
import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.codec.packstream import Structure
from proxy.devstack.stack import DevStack
from tests.bolt.test_wire import Peer, logged_on
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

STATEMENT = (
    "RETURN [1, 2.5, 'x', true, null] AS list, {a: date('2026-11-30')} AS map, "
    "datetime('2026-11-30T10:00:00[Europe/Berlin]') AS at, point({x: 1, y: 2}) AS p"
)


def test_the_bolt_door_answers_alike_on_the_driver(stack: DevStack, tmp_path: Path) -> None:
    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["bolt_relay"] = False

    second = SecondGateway(stack, tmp_path / "gateway", "relayoff", configure, bolt=True)
    second.start()
    auth = neo4j.bearer_auth(stack.token("demo_reader"))
    status = stack.status()["neo4j"]
    direct_auth = (status["gateway_user"], status["gateway_password"])
    try:
        with neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver:
            through, _, _ = driver.execute_query(STATEMENT, database_="neo4j")
            with pytest.raises(neo4j.exceptions.ClientError) as refused:
                driver.execute_query("CREATE (:RelayOff)", database_="neo4j")
        with neo4j.GraphDatabase.driver(status["bolt_uri"], auth=direct_auth) as driver:
            direct, _, _ = driver.execute_query(STATEMENT, database_="neo4j")
    finally:
        second.stop()
    assert [r.values() for r in through] == [r.values() for r in direct]
    assert refused.value.code == "Neo.ClientError.Security.Forbidden"
    with AuditReader(second.audit) as log:
        (decision,) = log.query(RecordFilter(event="decision", text="RETURN [1, 2.5"))
        outcomes = list(log.query(RecordFilter(event="outcome")))
    assert [o["status"] for o in outcomes if o["request_id"] == decision["request_id"]] == [202]


@pytest.mark.parametrize("end", ["reset", "rollback"])
def test_a_transaction_left_mid_stream_ends_at_once_on_the_driver(
    stack: DevStack, neo4j_admin: neo4j.Driver, tmp_path: Path, end: str
) -> None:
    """RESET or ROLLBACK while a statement of a transaction still has rows to come, on the
    driver: the statement ends at once and its transaction is rolled back, as on the relay and
    as Neo4j does (not run to its end first), recorded once as ended by the client."""

    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["bolt_relay"] = False

    second = SecondGateway(stack, tmp_path / "gateway", f"relayoff{end}", configure, bolt=True)
    second.start()
    label = f"OffTx{uuid.uuid4().hex[:10]}"
    try:
        assert second.bolt_uri is not None
        peer = logged_on(Peer(int(second.bolt_uri.rsplit(":", 1)[1])), stack.token("demo_writer"))
        peer.message(0x11, {})
        assert peer.answer() == Structure(b"\x70", ({},))
        peer.message(0x10, f"UNWIND range(1, 30000000) AS i CREATE (:`{label}`) RETURN i", {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": 5})
        answers = [peer.answer() for _ in range(6)]
        assert answers[-1] == Structure(b"\x70", ({"has_more": True},))
        started = time.monotonic()
        peer.message(0x0F if end == "reset" else 0x13)
        assert peer.answer() == Structure(b"\x70", ({},))
        took = time.monotonic() - started
        peer.close()
    finally:
        second.stop()
    assert took < 5
    with AuditReader(second.audit) as log:
        (decision,) = log.query(RecordFilter(event="decision", text=label))
        trail = [r for r in log.query(RecordFilter()) if r["request_id"] == decision["request_id"]]
    ended = [r for r in trail if r["event"] == "transaction"]
    trail = [r for r in trail if r["event"] != "transaction"]
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 499)]
    assert trail[1]["error"]["reason"] == "client_reset"
    assert [e["transaction"]["cause"] for e in ended] == ["client"]
    created, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS n")
    assert created[0]["n"] == 0


def _reset_mid_stream(
    stack: DevStack, tmp_path: Path, name: str, statement: str, *, then_run: bool = False
) -> list[dict[str, Any]]:
    """On a gateway of its own on the driver path: ``statement`` (which names ``name``) run
    auto-commit as demo_writer, five of its rows pulled with more to come, then RESET, answered
    at once; with ``then_run``, the connection then runs another statement. The statement's
    audit trail."""

    def configure(config: dict[str, Any]) -> None:
        config["neo4j"]["bolt_relay"] = False

    second = SecondGateway(stack, tmp_path / "gateway", name.lower(), configure, bolt=True)
    second.start()
    try:
        assert second.bolt_uri is not None
        peer = logged_on(Peer(int(second.bolt_uri.rsplit(":", 1)[1])), stack.token("demo_writer"))
        peer.message(0x10, statement, {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": 5})
        answers = [peer.answer() for _ in range(6)]
        assert answers[-1] == Structure(b"\x70", ({"has_more": True},))
        peer.message(0x0F)
        assert peer.answer() == Structure(b"\x70", ({},))
        if then_run:
            peer.message(0x10, "RETURN 1 AS one", {}, {})
            assert peer.answer() is not None
        peer.close()
    finally:
        second.stop()
    with AuditReader(second.audit) as log:
        (decision,) = log.query(RecordFilter(event="decision", text=name))
        return [r for r in log.query(RecordFilter()) if r["request_id"] == decision["request_id"]]


def test_an_auto_commit_write_left_mid_stream_is_rolled_back_on_the_driver(
    stack: DevStack, neo4j_admin: neo4j.Driver, tmp_path: Path
) -> None:
    """RESET while Neo4j still holds an auto-commit result open: rolled back, as Neo4j and the
    relay do (the driver path read it to its end, committing what the client reset)."""
    label = f"OffAuto{uuid.uuid4().hex[:10]}"
    statement = f"UNWIND range(1, 3000) AS i CREATE (:`{label}`) RETURN i"
    trail = _reset_mid_stream(stack, tmp_path, label, statement)
    assert [(r["event"], r["status"]) for r in trail] == [("decision", None), ("outcome", 499)]
    assert trail[1]["error"]["reason"] == "client_reset"
    assert "committed" not in trail[1]
    created, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS n")
    assert created[0]["n"] == 0


def test_a_reset_after_an_auto_commit_failed_unread_ends_on_the_driver(
    stack: DevStack, tmp_path: Path
) -> None:
    """RESET while the batch Neo4j sends holds a failure the client has not read: the statement
    is recorded as failed, the RESET answered, the connection usable (nothing waits forever
    on a result the driver already closed)."""
    label = f"OffFail{uuid.uuid4().hex[:10]}"
    statement = f"UNWIND range(1, 3000) AS i RETURN 1 / (500 - i) AS `{label}`"
    trail = _reset_mid_stream(stack, tmp_path, label, statement, then_run=True)
    assert [r["event"] for r in trail] == ["decision", "outcome"]
    assert trail[1]["error"] is not None
