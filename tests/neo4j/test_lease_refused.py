"""A leased Neo4j user that disappears (an administrator drops it, a restore from an older backup)
costs one request, which ran nothing: the lease is retired at once and the next request of the
DAG runs as a new user; /readyz shows the gap meanwhile."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import neo4j
import pytest
from neo4j import Driver

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration


def drop_the_leased_user(neo4j_admin: Driver, prefix: str) -> str:
    """Drop the one leased user whose name starts with ``prefix`` and close its connections, as
    a restart of Neo4j would (one already logged in stays so): every statement after needs a new
    connection. Returns the user's name."""
    users, _, _ = neo4j_admin.execute_query(
        "SHOW USERS YIELD user WHERE user STARTS WITH $prefix RETURN user",
        prefix=prefix,
        database_="system",
    )
    (leased,) = [row["user"] for row in users]
    neo4j_admin.execute_query("DROP USER $user", user=leased, database_="system")
    neo4j_admin.execute_query(
        "CALL dbms.listConnections() YIELD connectionId, username WHERE username = $user"
        " CALL dbms.killConnection(connectionId) YIELD message RETURN message",
        user=leased,
    )
    return str(leased)


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
        # A connection already logged in stays so; new ones are refused. Its connections closed
        # too (as a restart of Neo4j would), every write below needs a new one: a burst alone
        # could be served, one write after another, by the connection already open.
        leased = drop_the_leased_user(neo4j_admin, second.prefix)
        with ThreadPoolExecutor(max_workers=6) as pool:
            burst = list(
                pool.map(lambda n: second.query("demo_writer", write, {"n": n}), range(10, 16))
            )
        ready = httpx.get(second.url + "/readyz", timeout=10).json()
        answers = [second.query("demo_writer", write, {"n": n}) for n in (3, 4)]
        after = httpx.get(second.url + "/readyz", timeout=10).json()
        metrics = httpx.get(second.url + "/metrics", timeout=10).text
    finally:
        second.stop()

    refused = [r for r in burst if r.status_code == 503]
    assert refused, "no new connection was refused"
    assert {r.status_code for r in burst} <= {202, 503}
    assert refused[0].json()["errors"][0]["code"] == (
        "Neo.TransientError.General.DatabaseUnavailable"
    )
    assert [a.status_code for a in answers] == [202, 202]
    assert after["checks"]["leases"] == "ok"
    rows, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN n.n AS n")
    acknowledged = {1, 3, 4} | {10 + i for i, r in enumerate(burst) if r.status_code == 202}
    assert {row["n"] for row in rows} == acknowledged, "a refused statement ran"
    ids = {r.headers["X-CypherGate-Request-ID"] for r in refused}
    with AuditReader(second.audit) as reader:
        outcomes = list(reader.query(RecordFilter(event="outcome")))
    for outcome in outcomes:
        if outcome["request_id"] in ids:
            assert outcome["status"] == 503 and outcome["error"]["reason"] == "lease_refused"
            assert outcome["credential"]["user"] == leased
    burst_ids = {r.headers["X-CypherGate-Request-ID"] for r in burst}
    burst_users = {o["credential"]["user"] for o in outcomes if o["request_id"] in burst_ids}
    if burst_users == {leased}:  # no request of the burst came late enough to lease anew
        assert ready["checks"]["leases"] == "degraded"
    assert "cyphergate_neo4j_leases_refused_total 1.0" in metrics
    later = {o["credential"]["user"] for o in outcomes[-2:]}
    assert len(later) == 1 and leased not in later  # a new user, leased once


def test_a_dropped_leased_user_found_by_a_transaction_is_replaced_too(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    """A Bolt driver's managed transactions, and the Query API's /tx, begin an explicit
    transaction: a refused lease found there is retired as an auto-commit's is (503
    lease_refused, then a new user), not offered again until its time is up."""
    second = SecondGateway(stack, tmp_path / "gateway", "leasegonetx")
    second.start()
    label = "LeaseGoneTx" + uuid.uuid4().hex[:12]
    headers = {"Authorization": stack.auth_header("demo_writer")}

    def in_transaction(n: int) -> httpx.Response:
        return httpx.post(
            f"{second.url}/db/neo4j/query/v2/tx",
            json={"statement": f"CREATE (:`{label}` {{n: $n}})", "parameters": {"n": n}},
            headers=headers,
            timeout=60,
        )

    try:
        assert second.query("demo_writer", f"CREATE (:`{label}` {{n: 1}})").status_code == 202
        drop_the_leased_user(neo4j_admin, second.prefix)
        answers = [in_transaction(n) for n in (2, 3, 4)]
    finally:
        second.stop()
    statuses = [a.status_code for a in answers]
    assert statuses[0] == 503, (statuses, [a.text[:200] for a in answers])
    assert (
        answers[0].json()["errors"][0]["code"] == "Neo.TransientError.General.DatabaseUnavailable"
    )
    assert statuses[1:] == [202, 202], [a.text[:200] for a in answers]


def test_a_dropped_leased_user_found_by_a_bolt_transaction_is_replaced_too(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    """The same through the Bolt door: an explicit transaction whose BEGIN Neo4j refuses for the
    leased user fails as unavailable once (nothing ran), and the next one runs as a new user."""
    second = SecondGateway(stack, tmp_path / "gateway", "leasegonebolt", bolt=True)
    second.start()
    label = "LeaseGoneBolt" + uuid.uuid4().hex[:12]
    auth = neo4j.bearer_auth(stack.token("demo_writer"))
    outcomes: list[str] = []
    try:
        with neo4j.GraphDatabase.driver(str(second.bolt_uri), auth=auth) as driver:
            driver.execute_query(f"CREATE (:`{label}` {{n: 1}})", database_="neo4j")
            drop_the_leased_user(neo4j_admin, second.prefix)
            for n in (2, 3, 4):
                try:
                    with driver.session(database="neo4j") as session:
                        tx = session.begin_transaction()
                        tx.run(f"CREATE (:`{label}` {{n: $n}})", n=n).consume()
                        tx.commit()
                    outcomes.append("committed")
                except neo4j.exceptions.Neo4jError as error:
                    outcomes.append(str(error.code))
    finally:
        second.stop()
    assert outcomes == [
        "Neo.TransientError.General.DatabaseUnavailable",
        "committed",
        "committed",
    ], outcomes
