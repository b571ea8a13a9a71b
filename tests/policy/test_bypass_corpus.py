"""The bypass corpus: every attempt to do more than a grant allows is refused, and nothing changes.

Each case in ``bypass_corpus.json`` goes through the real gateway (real OIDC token, Neo4j's
EXPLAIN, OPA over ``policies/``); the graph is fingerprinted directly in Neo4j before and after.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver, GraphDatabase, bearer_auth
from neo4j.exceptions import Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import LEASE_PREFIX

pytestmark = pytest.mark.integration

CORPUS = json.loads((Path(__file__).parent / "bypass_corpus.json").read_text(encoding="utf-8"))
CASES: list[dict[str, Any]] = CORPUS["cases"]

# A small graph the corpus aims at; every node carries `corpus` so it can be removed afterwards.
GRAPH = """
CREATE (keanu:Person {name: 'Keanu Reeves', corpus: true}),
       (carrie:Person {name: 'Carrie-Anne Moss', corpus: true}),
       (matrix:Movie {title: 'The Matrix', corpus: true}),
       (acct:Account {number: 42, corpus: true}),
       (keanu)-[:ACTED_IN {roles: ['Neo']}]->(matrix),
       (carrie)-[:ACTED_IN {roles: ['Trinity']}]->(matrix),
       (keanu)-[:OWNS]->(acct)
"""
FINGERPRINT = """
CALL () { MATCH (n) RETURN collect([labels(n), properties(n)]) AS nodes }
CALL () { MATCH ()-[r]->() RETURN collect([type(r), properties(r)]) AS rels }
RETURN nodes, rels
"""


def fingerprint(driver: Driver) -> str:
    with driver.session(database="neo4j") as session:
        record = session.run(FINGERPRINT).single(strict=True)
        indexes = [r["name"] for r in session.run("SHOW INDEXES YIELD name")]
    users, _, _ = driver.execute_query("SHOW USERS YIELD user", database_="system")
    state = {
        "nodes": sorted(json.dumps(n, sort_keys=True, default=str) for n in record["nodes"]),
        "rels": sorted(json.dumps(r, sort_keys=True, default=str) for r in record["rels"]),
        "indexes": sorted(indexes),
        # The gateway's own leased users come and go as their leases renew: not the DAGs' doing.
        "users": sorted(u["user"] for u in users if not u["user"].startswith(LEASE_PREFIX)),
    }
    return json.dumps(state, sort_keys=True, default=str)  # str: dates and points


@pytest.fixture(scope="module")
def movie_graph(neo4j_admin: Driver) -> Iterator[Driver]:
    neo4j_admin.execute_query(GRAPH)
    yield neo4j_admin
    neo4j_admin.execute_query("MATCH (n {corpus: true}) DETACH DELETE n")


@pytest.fixture(scope="module")
def before(movie_graph: Driver) -> str:
    return fingerprint(movie_graph)


# Run first in the transaction, and allowed: a write where the DAG may write (the corpus graph's
# fingerprint shows it if the refusal that follows did not roll it back), else a read.
FIRST = {
    "demo_labels": "CREATE (:Person {name: 'first of a refused transaction', corpus: true})",
}


def _in_transaction(driver: Driver, case: dict[str, Any]) -> tuple[str, str, bool]:
    """The case as the second statement of an explicit transaction whose first is allowed;
    and whether the transaction opened at all (for a DAG or database with no grant at all the
    ``BEGIN`` is refused, by the preflight every statement's decision starts with)."""
    with driver.session(database=case.get("database", "neo4j")) as session:
        try:
            tx = session.begin_transaction()
        except Neo4jError as error:
            return (*_refusal(error), False)
        try:
            tx.run(FIRST.get(case["dag"], "RETURN 1")).consume()
            tx.run(case["statement"], case.get("parameters", {})).consume()
        except Neo4jError as error:
            return (*_refusal(error), True)
        finally:
            tx.close()  # rolls back what is still open; after a refusal, nothing is
    raise AssertionError("the gateway ran it")


def _bolt_driver(
    drivers: dict[str, Driver], status: dict[str, Any], stack: DevStack, case: dict[str, Any]
) -> Driver:
    """The case's DAG's driver to the gateway's Bolt door, made on first use."""
    if case["dag"] not in drivers:
        token = bearer_auth(stack.token(case["dag"]))
        drivers[case["dag"]] = GraphDatabase.driver(status["gateway_bolt_uri"], auth=token)
    return drivers[case["dag"]]


def _refusal(error: Neo4jError) -> tuple[str, str]:
    match = re.search(r"\(request ([0-9a-f-]{36})\)", error.message or "")
    assert match, error.message
    return str(error.code), match.group(1)


@pytest.fixture(scope="module")
def bolt_drivers() -> Iterator[dict[str, Driver]]:
    """One official driver per DAG, pointed at the gateway's Bolt door."""
    drivers: dict[str, Driver] = {}
    yield drivers
    for driver in drivers.values():
        driver.close()


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 50
    assert all(("denied_because" in c) != ("refused" in c) for c in CASES)


@pytest.mark.parametrize("door", ["http", "bolt", "bolt_transaction"])
@pytest.mark.parametrize("case", CASES, ids=[c["statement"][:70] for c in CASES])
def test_bypass_is_refused(
    stack: DevStack,
    status: dict[str, Any],
    gateway: httpx.Client,
    before: str,
    case: dict[str, Any],
    door: str,
    bolt_drivers: dict[str, Driver],
) -> None:
    del before  # taken before the first case runs
    opened = False  # an explicit transaction that opened (and so ends with a record)
    if door == "http":
        code, request_id = _over_http(stack, gateway, case)
    elif door == "bolt":
        code, request_id = _over_bolt(_bolt_driver(bolt_drivers, status, stack, case), case)
    else:
        driver = _bolt_driver(bolt_drivers, status, stack, case)
        code, request_id, opened = _in_transaction(driver, case)
    if "refused" in case:
        assert code == case["refused"]
        return
    assert code == "Neo.ClientError.Security.Forbidden"
    with AuditReader(stack.audit_path) as reader:
        records = list(reader.query(RecordFilter(request_id=request_id)))
    (record,) = [r for r in records if r["event"] == "decision"]
    assert case["denied_because"] in record["decision"]["reasons"], record["decision"]
    assert record["decision"]["allow"] is False and record["status"] == 403
    # In a transaction the refusal also ends it: one rollback record, under the same request.
    # Only the preflight's refusals (no grant for the DAG or the database) come at the BEGIN.
    ends = [r for r in records if r["event"] == "transaction"]
    assert len(ends) == (1 if opened else 0), records
    database = case.get("database", "neo4j")
    preflight = case["denied_because"] in ("dag_not_granted", f"database_not_granted:{database}")
    assert opened == (door == "bolt_transaction" and not preflight), record


def test_nothing_changed(movie_graph: Driver, before: str) -> None:
    assert fingerprint(movie_graph) == before


def test_the_grant_still_works(stack: DevStack, gateway: httpx.Client, movie_graph: Driver) -> None:
    """Least privilege, not no privilege: demo_labels does what it is granted."""
    header = {"Authorization": _auth_header(stack, "demo_labels")}
    read = gateway.post(
        "/db/neo4j/query/v2",
        json={
            "statement": "MATCH (p:Person)-[:ACTED_IN]->(m:Movie {title: $title}) "
            "RETURN p.name AS name ORDER BY name",
            "parameters": {"title": "The Matrix"},
        },
        headers=header,
    )
    assert read.status_code == 202, read.text
    assert read.json()["data"]["values"] == [["Carrie-Anne Moss"], ["Keanu Reeves"]]
    write = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "CREATE (:Person {name: 'Granted', corpus: true})"},
        headers=header,
    )
    assert write.status_code == 202, write.text
    records, _, _ = movie_graph.execute_query("MATCH (p:Person {name: 'Granted'}) RETURN p")
    assert len(records) == 1


def _over_http(stack: DevStack, gateway: httpx.Client, case: dict[str, Any]) -> tuple[str, str]:
    """The error code and request id of the case sent as a Query API request."""
    response = gateway.post(
        f"/db/{case.get('database', 'neo4j')}/query/v2",
        json={"statement": case["statement"], "parameters": case.get("parameters", {})},
        headers={"Authorization": _auth_header(stack, case["dag"])},
    )
    (error,) = response.json()["errors"]
    expected = (400, 404) if "refused" in case else (403,)
    assert response.status_code in expected, response.text
    return error["code"], response.headers["X-CypherGate-Request-ID"]


def _over_bolt(driver: Driver, case: dict[str, Any]) -> tuple[str, str]:
    """The error code and request id of the case sent over Bolt by the official driver."""
    with driver.session(database=case.get("database", "neo4j")) as session:
        try:
            session.run(case["statement"], case.get("parameters", {})).consume()
        except Neo4jError as error:
            return _refusal(error)
    raise AssertionError("the gateway ran it")


@cache
def _auth_header(stack: DevStack, dag: str) -> str:
    # Tokens live minutes; one per DAG is enough for the corpus.
    return stack.auth_header(dag)
