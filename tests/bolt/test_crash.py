"""A gateway killed (``kill -9``) in the middle of an explicit Bolt transaction: Neo4j rolls the
transaction back, and the audit log shows every statement that ran in it, decided before it ran."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import neo4j
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration


def test_kill_9_mid_transaction(stack: DevStack, neo4j_admin: Driver, tmp_path: Path) -> None:
    second = SecondGateway(stack, tmp_path / "gateway", "boltcrash", bolt=True)
    second.start()
    label = "BoltCrash" + uuid.uuid4().hex[:12]
    auth = neo4j.bearer_auth(stack.token("demo_writer"))
    driver = neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth)
    try:
        session = driver.session(database="neo4j")
        tx = session.begin_transaction()
        tx.run(f"CREATE (:`{label}` {{n: 1}})").consume()
        tx.run(f"CREATE (:`{label}` {{n: 2}})").consume()
        in_flight, _, _ = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD metaData WHERE metaData.dag_id = 'demo_writer' "
            "RETURN count(*) AS open"
        )
        assert in_flight[0]["open"] >= 1, "the transaction is open on Neo4j before the kill"
        assert second.process is not None
        second.process.kill()  # SIGKILL: no shutdown, no rollback by the gateway
        second.wait_exit()
        with contextlib.suppress(neo4j.exceptions.DriverError, neo4j.exceptions.Neo4jError):
            session.close()  # its server is gone
    finally:
        driver.close()
        second.stop()
    deadline = time.monotonic() + 30
    left = -1
    while time.monotonic() < deadline:  # Neo4j notices the lost connection and rolls back
        records, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS c")
        left = records[0]["c"]
        if left == 0:
            break
        time.sleep(0.5)
    assert left == 0, "Neo4j kept what the killed gateway's transaction wrote"
    with AuditReader(second.audit) as log:
        decisions = [
            r
            for r in log.query(RecordFilter(text=label))
            if r["event"] == "decision" and r["decision"]["allow"]
        ]
    assert len(decisions) == 2, "each statement that ran was decided, and recorded, first"
    assert len({r["transaction"]["id"] for r in decisions}) == 1
