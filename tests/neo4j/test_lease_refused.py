"""A leased Neo4j user that disappears (an administrator drops it, a restore from an older backup)
costs one request, which ran nothing: the lease is retired at once and the next request of the
DAG runs as a new user; /readyz shows the gap meanwhile."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration


def test_a_dropped_leased_user_is_replaced_after_one_refusal(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    second = SecondGateway(stack, tmp_path / "gateway", "leasegone")
    assert second.config["neo4j"]["credentials"] == "leases"
    second.start()
    label = "LeaseGone" + uuid.uuid4().hex[:12]
    write = f"CREATE (:`{label}` {{n: $n}})"
    try:
        assert second.query("demo_writer", write, {"n": 1}).status_code == 202
        users, _, _ = neo4j_admin.execute_query(
            "SHOW USERS YIELD user WHERE user STARTS WITH $prefix RETURN user",
            prefix=second.prefix,
            database_="system",
        )
        (leased,) = [row["user"] for row in users]
        neo4j_admin.execute_query("DROP USER $user", user=leased, database_="system")
        refused = second.query("demo_writer", write, {"n": 2})
        ready = httpx.get(second.url + "/readyz", timeout=10).json()
        answers = [second.query("demo_writer", write, {"n": n}) for n in (3, 4)]
        after = httpx.get(second.url + "/readyz", timeout=10).json()
    finally:
        second.stop()

    assert refused.status_code == 503, refused.text
    assert refused.json()["errors"][0]["code"] == "Neo.TransientError.General.DatabaseUnavailable"
    assert ready["checks"]["leases"] == "degraded"
    assert [a.status_code for a in answers] == [202, 202]
    assert after["checks"]["leases"] == "ok"
    rows, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN n.n AS n ORDER BY n")
    assert [row["n"] for row in rows] == [1, 3, 4], "the refused statement never ran"
    with AuditReader(second.audit) as reader:
        outcomes = list(reader.query(RecordFilter(event="outcome")))
    users_by_n = [(r["status"], r["credential"]["user"]) for r in outcomes]
    assert users_by_n[1] == (503, leased)
    assert users_by_n[2][1] == users_by_n[3][1] != leased  # a new user, leased once
    assert outcomes[1]["error"]["reason"] == "lease_refused"
