"""What the gateway holds of a result, on the real stack: a Query API answer is built whole
before it is sent, so its rows are held within ``server.http.max_answer_bytes`` of JSON; over
Bolt, a transaction's earlier result read ahead for its next statement is held within
``server.bolt_max_held_result_bytes``. And a statement that fails after its transaction of its
own committed is recorded as having committed, with what it wrote."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from neo4j import Driver, GraphDatabase, bearer_auth
from neo4j.exceptions import ClientError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.ports import free_ports
from tests.bolt.test_wire import Peer, failure, logged_on
from tests.conftest import request_id_in
from tests.second_gateway import SecondGateway

pytestmark = pytest.mark.integration

BOUND = 20_000  # bytes of JSON rows (HTTP), of held records (Bolt)


@pytest.fixture(scope="module")
def bolt_port() -> int:
    """The bounded gateway's Bolt door."""
    (port,) = free_ports(1)
    return port


@pytest.fixture(scope="module")
def bounded(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory, bolt_port: int
) -> Iterator[SecondGateway]:
    def small_answers(config: dict[str, Any]) -> None:
        config["server"].setdefault("http", {})["max_answer_bytes"] = BOUND
        config["server"]["bolt_port"] = bolt_port
        config["server"]["bolt_max_held_result_bytes"] = BOUND

    second = SecondGateway(stack, tmp_path_factory.mktemp("bounded"), "bounded", small_answers)
    second.start()
    try:
        yield second
    finally:
        second.stop()


def records(audit: Path, response: httpx.Response) -> dict[str, dict[str, Any]]:
    request_id = response.headers["X-CypherGate-Request-ID"]
    with AuditReader(audit) as reader:
        return {r["event"]: r for r in reader.query(RecordFilter(request_id=request_id))}


def count(neo4j_admin: Driver, label: str) -> int:
    found, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS c")
    return int(found[0]["c"])


def marker() -> str:
    return "T" + uuid.uuid4().hex[:12]


def test_rows_beyond_the_bound_are_refused_and_recorded(bounded: SecondGateway) -> None:
    within = bounded.query("demo_reader", "UNWIND range(1, 100) AS i RETURN i")
    assert within.status_code == 202, within.text[:300]
    assert within.json()["data"]["values"] == [[i] for i in range(1, 101)]
    beyond = bounded.query("demo_reader", "UNWIND range(1, 5000) AS i RETURN i, 'row ' + i AS t")
    assert beyond.status_code == 413, beyond.text[:300]
    (error,) = beyond.json()["errors"]
    assert error["code"] == "Neo.ClientError.Request.Invalid"
    assert f"more than {BOUND} bytes" in error["message"]
    assert "server.http.max_answer_bytes" in error["message"]
    trail = records(bounded.audit, beyond)
    assert trail["decision"]["decision"]["allow"] is True
    outcome = trail["outcome"]
    assert (outcome["status"], outcome["error"]["reason"]) == (413, "answer_too_large")
    assert "committed" not in outcome and outcome["counters"] is None


def test_a_write_past_the_bound_while_neo4j_holds_it_open_is_rolled_back(
    bounded: SecondGateway, neo4j_admin: Driver
) -> None:
    """3,000 rows: the relay asks for 1,000 at a time, so Neo4j still holds the statement when
    the bound is crossed, and the refusal leaves nothing written."""
    label = marker()
    statement = (
        f"UNWIND range(1, 3000) AS i CREATE (n:`{label}` {{i: i}}) RETURN n.i AS i, 'row ' + i"
    )
    refused = bounded.query("demo_writer", statement)
    assert refused.status_code == 413, refused.text[:300]
    assert count(neo4j_admin, label) == 0
    outcome = records(bounded.audit, refused)["outcome"]
    assert outcome["error"]["reason"] == "answer_too_large"
    assert "committed" not in outcome


def test_a_write_neo4j_finished_before_the_bound_is_recorded_as_committed(
    bounded: SecondGateway, neo4j_admin: Driver
) -> None:
    """One row larger than the bound: Neo4j sent it with its summary, so the statement had
    committed when the gateway refused the answer. The client is told the answer failed; the
    record says the write happened, and what it wrote."""
    label = marker()
    statement = f"CREATE (n:`{label}`) RETURN $big AS big"
    failed = bounded.query("demo_writer", statement, {"big": "x" * (BOUND + 1)})
    assert failed.status_code == 413, failed.text[:300]
    assert count(neo4j_admin, label) == 1
    outcome = records(bounded.audit, failed)["outcome"]
    assert (outcome["status"], outcome["error"]["reason"]) == (413, "answer_too_large")
    assert outcome["committed"] is True
    assert outcome["counters"]["nodesCreated"] == 1 and outcome["rows"] == 1  # read, not sent


def test_a_statement_in_a_transaction_past_the_bound_rolls_it_back(
    bounded: SecondGateway, neo4j_admin: Driver
) -> None:
    label = marker()
    headers = {"Authorization": bounded.stack.auth_header("demo_writer")}
    opened = httpx.post(
        f"{bounded.url}/db/neo4j/query/v2/tx",
        json={"statement": f"CREATE (n:`{label}`) RETURN $big AS big", "parameters": {"big": "y"}},
        headers=headers,
        timeout=60,
    )
    assert opened.status_code == 202, opened.text[:300]
    transaction = opened.json()["transaction"]["id"]
    beyond = httpx.post(
        f"{bounded.url}/db/neo4j/query/v2/tx/{transaction}",
        json={"statement": "UNWIND range(1, 5000) AS i RETURN i, 'row ' + i AS t"},
        headers=headers,
        timeout=60,
    )
    assert beyond.status_code == 413, beyond.text[:300]
    assert "committed" not in records(bounded.audit, beyond)["outcome"]
    commit = httpx.post(
        f"{bounded.url}/db/neo4j/query/v2/tx/{transaction}/commit", headers=headers, timeout=60
    )
    assert commit.status_code == 404, commit.text  # rolled back with the failure
    assert count(neo4j_admin, label) == 0


def test_a_write_whose_value_has_no_json_form_is_recorded_as_committed(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    """The value fails the answer after Neo4j finished the statement: it committed, and the
    record says so (before, it said only that the statement failed)."""
    label = marker()
    statement = f"CREATE (n:`{label}`) RETURN datetime('+10000-01-01T00:00[Europe/Berlin]') AS d"
    failed = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header("demo_writer")},
    )
    assert failed.status_code == 500, failed.text[:300]
    assert count(neo4j_admin, label) == 1
    outcome = records(stack.audit_path, failed)["outcome"]
    assert outcome["error"]["reason"].startswith("answer_not_writable")
    assert outcome["committed"] is True and outcome["counters"]["nodesCreated"] == 1


def test_a_bolt_result_read_ahead_past_its_bound_fails_its_transaction(
    bounded: SecondGateway, bolt_port: int, neo4j_admin: Driver
) -> None:
    """A transaction's second RUN while its first result is still open (5 of 3,000 rows
    pulled): the gateway reads the rest ahead, to run the next statement on the same connection,
    and holds it only within the bound. Past it, the first statement fails (413, recorded), the
    second RUN gets the FAILURE, and RESET rolls the transaction back: nothing it wrote is kept."""
    label = marker()
    peer = logged_on(Peer(bolt_port), bounded.stack.token("demo_writer"))
    try:
        peer.message(0x11, {})  # BEGIN
        assert peer.answer() is not None
        statement = f"UNWIND range(1, 3000) AS i CREATE (n:`{label}`) RETURN i, 'row ' + i AS t"
        peer.message(0x10, statement, {}, {})
        assert peer.answer() is not None
        peer.message(0x3F, {"n": 5})
        pulled = [peer.answer() for _ in range(6)]
        assert [a.tag for a in pulled if a is not None] == [b"\x71"] * 5 + [b"\x70"]
        peer.message(0x10, "RETURN 1 AS next", {}, {})
        refused = peer.answer()
        assert failure(refused) == "Neo.ClientError.Request.Invalid"
        assert refused is not None
        assert "server.bolt_max_held_result_bytes" in refused.fields[0]["message"]
        peer.message(0x0F)  # RESET: the transaction ends
        assert peer.answer() is not None
    finally:
        peer.close()
    assert count(neo4j_admin, label) == 0
    with AuditReader(bounded.audit) as reader:
        decision = next(reader.query(RecordFilter(text=label)))
        trail = list(reader.query(RecordFilter(request_id=decision["request_id"])))
    outcome = next(r for r in trail if r["event"] == "outcome")
    assert (outcome["status"], outcome["error"]["reason"]) == (413, "held_result_too_large")
    assert "committed" not in outcome


@pytest.mark.parametrize("door", ["http", "bolt"])
def test_a_statement_that_commits_in_batches_and_fails_is_recorded_as_partly_committed(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver, status: dict[str, Any], door: str
) -> None:
    """``CALL { ... } IN TRANSACTIONS`` commits each batch on its own: when row 25 fails, its
    batch rolls back but the two before it stay, so its failed outcome must not read as
    "nothing was kept"."""
    label = marker()
    statement = (
        f"UNWIND range(1, 30) AS i CALL (i) {{ CREATE (:`{label}` {{i: i}}) "
        "RETURN 1 / (i - 25) AS x } IN TRANSACTIONS OF 10 ROWS RETURN x"
    )
    if door == "http":
        failed = gateway.post(
            "/db/neo4j/query/v2",
            json={"statement": statement},
            headers={"Authorization": stack.auth_header("demo_writer")},
        )
        assert failed.status_code == 400, failed.text[:300]
        request_id = failed.headers["X-CypherGate-Request-ID"]
    else:
        auth = bearer_auth(stack.token("demo_writer"))
        with (
            GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
            driver.session(database="neo4j") as session,
            pytest.raises(ClientError) as error,
        ):
            session.run(statement).consume()
        request_id = request_id_in(error.value.message)
    kept = count(neo4j_admin, label)
    with AuditReader(stack.audit_path) as reader:
        outcome = {r["event"]: r for r in reader.query(RecordFilter(request_id=request_id))}
    assert kept == 20
    assert outcome["decision"]["analysis"]["operators"] == ["TransactionApply"]
    assert outcome["outcome"]["error"]["code"] == "Neo.ClientError.Statement.ArithmeticError"
    assert outcome["outcome"]["committed"] == "partial"
    neo4j_admin.execute_query(f"MATCH (n:`{label}`) DELETE n")


def test_a_statement_nested_too_deep_for_the_plan_reader_is_refused_not_failed(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """Found by review: a list literal nested 70 deep overflowed the plan reader's recursion,
    a 500. Now what the reader cannot read is refused, as anything it does not understand."""
    depth = 150
    refused = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN " + "[" * depth + "1" + "]" * depth + " AS x"},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert refused.status_code == 403, refused.text[:300]
    decision = records(stack.audit_path, refused)["decision"]
    assert "plan_not_understood:nesting too deep" in decision["decision"]["reasons"]


def test_an_answer_nested_beyond_the_decoder_fails_as_an_answer_not_writable(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """A parameter nested 120 deep can be sent to Neo4j, but the answer that returns it is
    nested beyond what the gateway decodes (64): a clear failure, recorded, not an internal
    error."""
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(120):
        nested = {"a": nested}
    failed = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN $p AS p", "parameters": {"p": nested}},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert failed.status_code == 500, failed.text[:300]
    assert failed.json()["errors"][0]["code"] == "Neo.DatabaseError.Statement.ExecutionFailed"
    outcome = records(stack.audit_path, failed)["outcome"]
    assert outcome["error"]["reason"] == "answer_not_writable:undecodable"
