"""The whole request path against the real Neo4j, OPA, OIDC provider and gateway process."""

from __future__ import annotations

import json
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from neo4j import Driver, GraphDatabase, bearer_auth
from neo4j.exceptions import Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import AUDIENCE, LEASE_PREFIX, OTHER_AUDIENCE
from tests.command_line import cyphergate
from tests.conftest import changed_policy_data, request_id_in

pytestmark = pytest.mark.integration

QUERY = "/db/neo4j/query/v2"


def post(
    gateway: httpx.Client, token: str | None, body: Any, *, database: str = "neo4j"
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}".strip()} if token is not None else {}
    return gateway.post(f"/db/{database}/query/v2", json=body, headers=headers)


def records_of(stack: DevStack, response: httpx.Response) -> list[dict[str, Any]]:
    request_id = response.headers["X-CypherGate-Request-ID"]
    with AuditReader(stack.audit_path) as reader:
        return list(reader.query(RecordFilter(request_id=request_id)))


def count(neo4j_admin: Driver, label: str) -> int:
    records, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS c")
    return int(records[0]["c"])


def marker() -> str:
    return "T" + uuid.uuid4().hex[:12]


# ----------------------------------------------------------------------------- allowed


def test_allowed_read_returns_what_neo4j_returns(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    neo4j_admin.execute_query(
        f"CREATE (a:`{label}` {{name: 'Ada', born: date('1815-12-10'), tags: ['x', 'y'],"
        " at: datetime('2024-01-02T03:04:05.123Z'), where: point({x: 1.5, y: 2.5}),"
        " score: 0.25, bits: 7})"
        f"-[:KNOWS {{since: 1843}}]->(:`{label}` {{name: 'Charles'}})"
    )
    statements = [
        "RETURN 1 AS one, 'two' AS two, 3.5 AS three, true AS t, null AS n, [1, [2]] AS l,"
        " {a: {b: 1}} AS m",
        f"MATCH (a:`{label}` {{name: 'Ada'}}) RETURN a",
        f"MATCH (a:`{label}`)-[r:KNOWS]->(b) RETURN a.name, r, b.name",
        f"MATCH p = (:`{label}`)-[:KNOWS]->(:`{label}`) RETURN p",
        f"MATCH (a:`{label}` {{name: 'Ada'}}) RETURN a.born, a.at, a.where, a.tags, a.score",
        "RETURN duration('P1Y2M3DT4H5M6.5S') AS d, localdatetime('2024-05-06T07:08:09') AS ldt,"
        " time('10:11:12+01:00') AS t, point({latitude: 1, longitude: 2}) AS geo",
        "UNWIND range(1, 5) AS x RETURN x, x * x AS square ORDER BY x",
        "RETURN 1e20 AS big, -2.5e-10 AS small, 12345678.5 AS wide, 0.1 AS tenth,"
        " datetime('2024-01-02T03:04:05.5[Europe/Berlin]') AS zoned,"
        " datetime('2024-01-02T03:04:05+02:00') AS offset, localtime('10:11') AS lt,"
        " datetime('2024-01-02T03:04:05[Etc/UTC]') AS etc,"
        " datetime('2024-01-02T03:04[GMT]') AS gmt,"
        " point({x: 1, y: 2, z: 3}) AS p3, point({x: 1e20, y: 1e-5}) AS far,"
        " point({longitude: 1e-4, latitude: 0.5, height: 1e7}) AS high",
        # Beyond the years 1 to 9999, which the driver's types cannot hold: as Neo4j writes them.
        "RETURN date('+10000-01-01') AS far, date('-0001-12-31') AS bc, date('0000-06-15') AS z,"
        " date('0000-01-01') AS zero,"
        " localdatetime('+10000-01-01T00:00:01.5') AS farl, localdatetime('-0001-01-01T00:00')"
        " AS bcl, datetime('+10000-01-01T00:00+02:00') AS faro,"
        " datetime('-0001-01-01T10:11:12.5Z') AS bco",
        # Not JSON numbers: Neo4j writes them as strings (typed: their Java text).
        "RETURN 0.0 / 0.0 AS nan, 1.0 / 0.0 AS inf, -1.0 / 0.0 AS ninf, [0.0 / 0.0, 1.5] AS l,"
        " {x: -1.0 / 0.0} AS m",
    ]
    token = stack.token("demo_reader")
    typed = "application/vnd.neo4j.query"
    for media_type in ("application/json", typed):
        headers = {"Content-Type": media_type, "Accept": media_type}
        for statement in statements:
            body = json.dumps({"statement": statement, "includeCounters": True})
            through = gateway.post(
                QUERY, content=body, headers={**headers, "Authorization": f"Bearer {token}"}
            )
            direct = neo4j_http.post(QUERY, content=body, headers=headers)
            assert through.status_code == direct.status_code == 202, (statement, through.text)
            assert through.headers["content-type"] == direct.headers["content-type"]
            ours, theirs = through.json(), direct.json()
            assert ours.pop("bookmarks") and theirs.pop("bookmarks")
            assert ours == theirs, (media_type, statement)


def test_typed_parameters_round_trip_as_in_neo4j(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client
) -> None:
    typed = "application/vnd.neo4j.query"
    parameters = {
        "i": {"$type": "Integer", "_value": "9007199254740993"},  # beyond a double's precision
        "f": {"$type": "Float", "_value": "1.5"},
        "b": {"$type": "Base64", "_value": "AQID"},
        "d": {"$type": "Date", "_value": "2024-01-02"},
        "dt": {"$type": "OffsetDateTime", "_value": "2024-01-02T03:04:05.5+01:00"},
        "zdt": {"$type": "ZonedDateTime", "_value": "2024-07-02T03:04:05+02:00[Europe/Berlin]"},
        "du": {"$type": "Duration", "_value": "P1DT2H"},
        "p": {"$type": "Point", "_value": "SRID=4326;POINT (2.0 1.0)"},
        "l": {
            "$type": "List",
            "_value": [{"$type": "Integer", "_value": "1"}, {"$type": "Null", "_value": None}],
        },
        "m": {"$type": "Map", "_value": {"k": {"$type": "Boolean", "_value": True}}},
    }
    body = json.dumps(
        {
            "statement": "RETURN $i AS i, $i + 1 AS next, $f AS f, $b AS b, $d AS d, $dt AS dt,"
            " $zdt AS zdt, $du AS du, $p AS p, $l AS l, $m AS m",
            "parameters": parameters,
        }
    )
    headers = {"Content-Type": typed, "Accept": typed}
    token = stack.token("demo_reader")
    through = gateway.post(
        QUERY, content=body, headers={**headers, "Authorization": f"Bearer {token}"}
    )
    direct = neo4j_http.post(QUERY, content=body, headers=headers)
    assert through.status_code == direct.status_code == 202, through.text
    assert through.json()["data"] == direct.json()["data"]
    bad = gateway.post(
        QUERY,
        content=json.dumps(
            {"statement": "RETURN $x", "parameters": {"x": {"$type": "Integer", "_value": "one"}}}
        ),
        headers={**headers, "Authorization": f"Bearer {token}"},
    )
    assert bad.status_code == 400
    assert "parameters.x: not a valid Integer" in bad.json()["errors"][0]["message"]


def test_typed_parameters_neo4j_refuses_are_refused_as_neo4j_refuses_them(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client
) -> None:
    """A point whose SRID does not match its number of coordinates ran through the gateway as
    a point in another system (SRID=7203 with three coordinates as 9157), where Neo4j refuses
    it; so did Python's float words, a Null with a value and a Map written as pairs."""
    typed = "application/vnd.neo4j.query"
    headers = {"Content-Type": typed, "Accept": typed}
    token = stack.token("demo_reader")
    for value in [
        {"$type": "Point", "_value": "SRID=7203;POINT Z (1 2 3)"},
        {"$type": "Point", "_value": "SRID=4326;POINT (1 2 3)"},
        {"$type": "Point", "_value": "SRID=9157;POINT (1 2)"},
        {"$type": "Float", "_value": "nan"},
        {"$type": "Float", "_value": "1_0"},
        {"$type": "Null", "_value": 1},
        {"$type": "Map", "_value": [["a", {"$type": "Integer", "_value": "1"}]]},
    ]:
        body = json.dumps({"statement": "RETURN $x AS x", "parameters": {"x": value}})
        direct = neo4j_http.post(QUERY, content=body, headers=headers)
        through = gateway.post(
            QUERY, content=body, headers={**headers, "Authorization": f"Bearer {token}"}
        )
        assert direct.status_code == 400, (value, direct.text)
        assert through.status_code == 400, (value, through.text)
        assert through.json()["errors"][0]["code"] == "Neo.ClientError.Request.Invalid"


def test_a_body_with_a_utf8_byte_order_mark_runs_as_on_neo4j(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client
) -> None:
    """Neo4j ignores a UTF-8 byte order mark before the JSON (RFC 8259 lets a parser); the
    gateway refused the body as invalid JSON, so a client whose tooling adds one worked against
    Neo4j and not through the gateway."""
    headers = {"Content-Type": "application/json"}
    body = b'\xef\xbb\xbf{"statement": "RETURN 1 AS x"}'
    direct = neo4j_http.post(QUERY, content=body, headers=headers)
    through = gateway.post(
        QUERY,
        content=body,
        headers={**headers, "Authorization": f"Bearer {stack.token('demo_reader')}"},
    )
    assert direct.status_code == through.status_code == 202, through.text
    assert through.json()["data"] == direct.json()["data"] == {"fields": ["x"], "values": [[1]]}


def test_a_statement_neo4j_refuses_is_described_as_neo4j_describes_it(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client
) -> None:
    """The gateway plans a statement as EXPLAIN and the statement, and Neo4j's refusal of that
    quoted "EXPLAIN ..." with every position on the first line eight columns on: the caller
    read another statement than its own, and columns that point elsewhere in it."""
    token = stack.token("demo_reader")
    for statement in [
        "RETURN 1 AS x, 2 AS x",
        "MATCH (n)\nRETURN m",
        "RETURN 1 +",
        "EXPLAIN RETURN 1 AS x, 2 AS x",
    ]:
        body = {"statement": statement}
        direct = neo4j_http.post(QUERY, json=body)
        through = post(gateway, token, body)
        assert direct.status_code == through.status_code == 400, (statement, through.text)
        (theirs,), (ours,) = direct.json()["errors"], through.json()["errors"]
        assert ours == theirs, statement


@pytest.mark.parametrize("statement", ["   ", "\n", "// only a comment"])
def test_a_statement_of_nothing_is_told_of_its_own_text_not_the_gateways(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client, statement: str
) -> None:
    """Found by review: a blank or comment-only statement was told of an error at column 8 of
    a quoted "EXPLAIN", the gateway's own planning. It is told of its own text (quoted as
    Neo4j quotes it) at its start (Neo4j's own positions there are its parser's: line 0)."""
    body = {"statement": statement}
    direct = neo4j_http.post(QUERY, json=body)
    through = post(gateway, stack.token("demo_reader"), body)
    assert direct.status_code == through.status_code == 400, through.text
    (theirs,), (ours,) = direct.json()["errors"], through.json()["errors"]
    assert ours["code"] == theirs["code"] == "Neo.ClientError.Statement.SyntaxError"
    quoted = [line for line in ours["message"].split("\n") if line.startswith('"')]
    assert quoted == [line for line in theirs["message"].split("\n") if line.startswith('"')]
    assert "(line 1, column 1 (offset: 0))" in ours["message"]


def test_an_explain_answers_with_neo4j_s_query_plan(
    stack: DevStack, gateway: httpx.Client, neo4j_http: httpx.Client
) -> None:
    """Neo4j's Query API answers a caller's EXPLAIN with its plan (``queryPlan``: operators,
    ``arguments``, ``identifiers``, ``children``; arguments typed in the typed form), which the
    gateway shows over Bolt but left out of its HTTP answers: only the estimates stay out."""

    def without_estimates(plan: dict[str, Any]) -> dict[str, Any]:
        arguments = {k: v for k, v in plan["arguments"].items() if k != "EstimatedRows"}
        children = [without_estimates(child) for child in plan["children"]]
        return {**plan, "arguments": arguments, "children": children}

    token = stack.token("demo_reader")
    statement = "EXPLAIN MATCH (a:Person) WHERE a.name = 'x' RETURN a.name AS n LIMIT 3"
    for media_type in ("application/json", "application/vnd.neo4j.query"):
        headers = {"Content-Type": media_type, "Accept": media_type}
        body = json.dumps({"statement": statement})
        direct = neo4j_http.post(QUERY, content=body, headers=headers)
        through = gateway.post(
            QUERY, content=body, headers={**headers, "Authorization": f"Bearer {token}"}
        )
        assert direct.status_code == through.status_code == 202, through.text
        theirs, ours = direct.json(), through.json()
        assert ours["data"] == theirs["data"] == {"fields": ["n"], "values": []}
        assert "queryPlan" in ours, (media_type, ours)
        assert ours["queryPlan"] == without_estimates(theirs["queryPlan"]), media_type


def test_a_value_with_no_query_api_form_fails_the_statement_as_recorded(
    stack: DevStack, gateway: httpx.Client
) -> None:
    """A date-time in a named zone past year 9999: Neo4j has it, but no zone rules place it, so
    the gateway cannot write it as Neo4j would. A clear error, and the audit log says the same
    thing the client saw (the value is encoded inside the request path, not after it)."""
    statement = "RETURN datetime('+10000-01-01T00:00[Europe/Berlin]') AS far"
    response = post(gateway, stack.token("demo_reader"), {"statement": statement})
    assert response.status_code == 500, response.text
    (error,) = response.json()["errors"]
    assert error["code"] == "Neo.DatabaseError.Statement.ExecutionFailed"
    assert "zoned date-time outside the years 1 to 9999" in error["message"]
    decision, outcome = records_of(stack, response)
    assert decision["decision"]["allow"] and outcome["status"] == 500
    assert outcome["error"]["reason"].startswith("answer_not_writable")
    ok = post(gateway, stack.token("demo_reader"), {"statement": "RETURN 1 AS one"})
    assert ok.status_code == 202 and ok.json()["data"]["values"] == [[1]]


def test_parameters_are_passed_and_counters_reported(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    response = post(
        gateway,
        stack.token("demo_writer"),
        {
            "statement": f"CREATE (n:`{label}` {{name: $name, n: $n}}) RETURN n.name AS name",
            "parameters": {"name": "Grace", "n": 3},
            "includeCounters": True,
        },
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["data"] == {"fields": ["name"], "values": [["Grace"]]}
    assert body["counters"]["nodesCreated"] == 1
    assert body["counters"]["propertiesSet"] == 2
    assert count(neo4j_admin, label) == 1
    decision, outcome = records_of(stack, response)
    assert decision["event"] == "decision" and decision["decision"]["allow"] is True
    assert decision["query_type"] == "rw" and decision["access_mode"] == "WRITE"
    assert decision["status"] is None  # written before the statement ran
    assert outcome["event"] == "outcome" and outcome["status"] == 202 and outcome["rows"] == 1
    # The statement ran as the DAG's leased Neo4j user, named in both records (never a secret).
    assert decision["credential"] == outcome["credential"]
    assert decision["credential"]["user"].startswith(LEASE_PREFIX + "demo_writer_")
    assert set(decision["credential"]) == {"user"}
    assert outcome["counters"]["nodesCreated"] == 1
    assert "Grace" not in str(decision) + str(outcome)  # parameter values are not logged
    assert set(decision["parameters"]) == {"name", "n"}
    assert all(d.startswith("hmac-sha256:") for d in decision["parameters"].values())
    # The log's files (database and write-ahead log) hold the record, but not the value.
    stored = b"".join(f.read_bytes() for f in stack.audit_path.parent.glob("audit.sqlite3*"))
    assert decision["request_id"].encode() in stored
    assert b"Grace" not in stored


def test_batched_writes_in_transactions_run(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    # CALL { ... } IN TRANSACTIONS only runs in an auto-commit transaction.
    label = marker()
    statement = (
        f"UNWIND range(1, 50) AS i CALL (i) {{ CREATE (:`{label}` {{i: i}}) }} "
        "IN TRANSACTIONS OF 10 ROWS"
    )
    response = post(gateway, stack.token("demo_writer"), {"statement": statement})
    assert response.status_code == 202, response.text
    assert count(neo4j_admin, label) == 50


@pytest.mark.parametrize("door", ["http", "bolt"])
def test_batched_writes_run_under_a_row_limit_that_fails(
    stack: DevStack,
    gateway: httpx.Client,
    neo4j_admin: Driver,
    status: dict[str, Any],
    door: str,
) -> None:
    """demo_labels' row limit fails past 1,000 rows ("error"), so its writes run in a transaction
    the gateway can roll back; but Neo4j runs ``CALL { ... } IN TRANSACTIONS`` only in an
    auto-commit transaction (its batches commit on their own: nothing rolls it back whole), and
    refused it there as a database error, 502: a grant with such a limit could never write in
    batches. It runs auto-commit, and past the limit it fails with its batches kept, as the
    outcome record says."""
    batch = marker()
    writes = (
        "UNWIND range(1, 30) AS i CALL (i) { CREATE (:Person {batch: $b}) }"
        " IN TRANSACTIONS OF 10 ROWS"
    )
    past = (
        "UNWIND range(1, 1500) AS i CALL (i) { CREATE (:Person {batch: $b}) RETURN i AS x }"
        " IN TRANSACTIONS OF 500 ROWS RETURN x"
    )
    codes: list[str | None] = []
    if door == "http":
        header = {"Authorization": stack.auth_header("demo_labels")}
        for statement in (writes, past):
            body = {"statement": statement, "parameters": {"b": batch}}
            answer = gateway.post("/db/neo4j/query/v2", json=body, headers=header)
            errors = answer.json().get("errors") or [{}]
            codes.append(errors[0].get("code"))
            request_id = answer.headers["X-CypherGate-Request-ID"]
    else:
        auth = bearer_auth(stack.token("demo_labels"))
        with (
            GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth) as driver,
            driver.session(database="neo4j") as session,
        ):
            for statement in (writes, past):
                try:
                    session.run(statement, b=batch).consume()
                    codes.append(None)
                except Neo4jError as error:
                    codes.append(error.code)
                    request_id = request_id_in(error.message)
    records, _, _ = neo4j_admin.execute_query(
        "MATCH (p:Person {batch: $b}) WITH count(p) AS n, collect(p) AS ps "
        "FOREACH (p IN ps | DELETE p) RETURN n",
        b=batch,
    )
    assert codes == [None, "Neo.ClientError.Statement.RowLimitExceeded"]
    assert records[0]["n"] >= 30 + 1000  # the first statement's, and the batches before the limit
    with AuditReader(stack.audit_path) as reader:
        outcome = {r["event"]: r for r in reader.query(RecordFilter(request_id=request_id))}
    # Whole if Neo4j had run every batch before the gateway counted past the limit.
    assert outcome["outcome"]["committed"] in (True, "partial")


@pytest.mark.parametrize("door", ["http", "bolt"])
def test_batches_in_an_explicit_transaction_are_the_callers_error(
    stack: DevStack,
    gateway: httpx.Client,
    neo4j_admin: Driver,
    status: dict[str, Any],
    door: str,
) -> None:
    """Neo4j runs ``CALL { ... } IN TRANSACTIONS`` only auto-commit, and refuses it in an
    explicit transaction as a database error, which the gateway relayed as its own failure (502,
    ``Neo.DatabaseError.General.UnknownError``, "Neo4j failed to run the statement"): the
    caller could not tell its statement was at fault. The analysis knows it commits in batches,
    so it is refused before it runs, as the caller's error (400), and the transaction rolled
    back with what ran in it, as a failed statement's is."""
    label = marker()
    first = f"CREATE (:`{label}`)"
    batches = (
        f"UNWIND range(1, 5) AS i CALL (i) {{ CREATE (:`{label}` {{i: i}}) }} "
        "IN TRANSACTIONS OF 2 ROWS"
    )
    token = stack.token("demo_writer")
    if door == "http":
        header = {"Authorization": f"Bearer {token}"}
        opened = gateway.post(f"{QUERY}/tx", json={"statement": first}, headers=header)
        assert opened.status_code == 202, opened.text
        transaction = opened.json()["transaction"]["id"]
        refused = gateway.post(
            f"{QUERY}/tx/{transaction}", json={"statement": batches}, headers=header
        )
        assert refused.status_code == 400, refused.text
        code = refused.json()["errors"][0]["code"]
        request_id = refused.headers["X-CypherGate-Request-ID"]
        after = gateway.post(f"{QUERY}/tx/{transaction}/commit", headers=header)
        assert after.status_code == 404, "the refusal ended the transaction"
    else:
        with (
            GraphDatabase.driver(status["gateway_bolt_uri"], auth=bearer_auth(token)) as driver,
            driver.session(database="neo4j") as session,
        ):
            tx = session.begin_transaction()
            tx.run(first).consume()
            with pytest.raises(Neo4jError) as failed:
                tx.run(batches).consume()
            code, request_id = failed.value.code, request_id_in(failed.value.message)
            tx.close()
    assert code == "Neo.ClientError.Transaction.ForbiddenDueToTransactionType"
    assert count(neo4j_admin, label) == 0, "nothing of the transaction was committed"
    with AuditReader(stack.audit_path) as reader:
        trail = {r["event"]: r for r in reader.query(RecordFilter(request_id=request_id))}
    assert "outcome" not in trail, "refused before it ran"
    assert trail["decision"]["error"]["code"] == code
    assert trail["transaction"]["transaction"]["cause"] == "failure"


def test_counters_only_when_asked(stack: DevStack, gateway: httpx.Client) -> None:
    response = post(gateway, stack.token("demo_reader"), {"statement": "RETURN 1 AS x"})
    assert response.status_code == 202
    assert "counters" not in response.json()


# ----------------------------------------------------------------------------- denied


def test_read_only_dag_cannot_write(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    for statement in (
        f"CREATE (:`{label}`)",
        f"MERGE (:`{label}`)",
        f"MATCH (n) WITH n LIMIT 1 CREATE (:`{label}`)",
    ):
        response = post(gateway, stack.token("demo_reader"), {"statement": statement})
        assert response.status_code == 403, response.text
        error = response.json()["errors"][0]
        assert error["code"] == "Neo.ClientError.Security.Forbidden"
        assert "write_not_granted" in error["message"]
        (record,) = records_of(stack, response)
        assert record["decision"]["allow"] is False
        assert record["decision"]["reasons"] == ["write_not_granted"]
        assert record["decision"]["decision_id"]
        assert record["status"] == 403
    assert count(neo4j_admin, label) == 0


def test_read_only_dag_asking_for_write_mode_still_reads_only(
    stack: DevStack, gateway: httpx.Client
) -> None:
    response = post(
        gateway, stack.token("demo_reader"), {"statement": "RETURN 1 AS x", "accessMode": "WRITE"}
    )
    assert response.status_code == 202
    decision, _ = records_of(stack, response)
    assert decision["access_mode"] == "READ"


def test_write_in_a_read_transaction_fails_with_neo4js_access_mode_error(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    # The caller asks for READ; Neo4j itself refuses the write inside the READ transaction.
    label = marker()
    response = post(
        gateway,
        stack.token("demo_writer"),
        {"statement": f"CREATE (:`{label}`)", "accessMode": "READ"},
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["code"] == "Neo.ClientError.Statement.AccessMode"
    decision, outcome = records_of(stack, response)
    assert decision["access_mode"] == "READ" and outcome["status"] == 400
    assert count(neo4j_admin, label) == 0


def test_dag_without_grant_is_denied(stack: DevStack, gateway: httpx.Client) -> None:
    response = post(gateway, stack.token("demo_unlisted"), {"statement": "RETURN 1"})
    assert response.status_code == 403
    assert "dag_not_granted" in response.json()["errors"][0]["message"]
    (record,) = records_of(stack, response)
    assert record["principal"]["dag"] == "demo_unlisted"


def test_writer_cannot_reach_another_database(stack: DevStack, gateway: httpx.Client) -> None:
    response = post(
        gateway, stack.token("demo_writer"), {"statement": "SHOW USERS"}, database="system"
    )
    assert response.status_code == 403
    assert "database_not_granted:system" in response.json()["errors"][0]["message"]


# ----------------------------------------------------------------------------- authentication


def forged_token(issuer: str) -> str:
    """A well-formed token for the right issuer and audience, signed by a key nobody trusts."""
    key = RSAKey.generate_key(2048, parameters={"kid": "not-the-issuers-key"})
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": AUDIENCE,
        "sub": "demo_writer",
        "dag_id": "demo_writer",
        "iat": now,
        "exp": now + 300,
    }
    return jwt.encode({"alg": "RS256", "kid": "not-the-issuers-key"}, claims, key)


def test_bad_credentials_get_401_and_never_reach_neo4j(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    expired = stack.client_token("short_lived_reader")
    time.sleep(2.1)
    cases = {
        "no token": (None, "missing_credential"),
        "empty bearer": ("", "empty_credential"),
        "garbage": ("not.a.jwt", "malformed_token"),
        "expired": (expired, "token_expired"),
        "other audience": (stack.token("demo_writer", audience=OTHER_AUDIENCE), "invalid_aud"),
        "unknown key": (forged_token(stack.issuer()), "unknown_key"),
    }
    for name, (token, reason) in cases.items():
        response = post(gateway, token, {"statement": f"CREATE (:`{label}`)"})
        assert response.status_code == 401, name
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json() == {
            "errors": [
                {
                    "code": "Neo.ClientError.Security.Unauthorized",
                    "message": "Authentication failed.",
                }
            ]
        }
        (record,) = records_of(stack, response)
        assert record["error"]["reason"] == reason, name
        # Authentication failed before analysis: Neo4j was never asked about the statement.
        assert record["query_type"] is None and record["principal"] is None
    assert count(neo4j_admin, label) == 0


# ----------------------------------------------------------------------------- bad input


def test_bad_requests_get_neo4j_style_errors_and_are_audited(
    stack: DevStack, gateway: httpx.Client
) -> None:
    headers = {"Authorization": f"Bearer {stack.token('demo_reader')}"}
    json_headers = {**headers, "Content-Type": "application/json"}
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        (
            "malformed JSON",
            {"content": b"{not json", "headers": json_headers},
            400,
            "Neo.ClientError.Request.Invalid",
        ),
        (
            "no statement",
            {"json": {"parameters": {}}, "headers": headers},
            400,
            "Neo.ClientError.Request.Invalid",
        ),
        (
            "unknown field",
            {"json": {"statement": "RETURN 1", "impersonatedUser": "neo4j"}, "headers": headers},
            400,
            "Neo.ClientError.Request.Invalid",
        ),
        (
            "oversized",
            {"json": {"statement": "RETURN '" + "x" * 1_100_000 + "'"}, "headers": headers},
            413,
            "Neo.ClientError.Request.Invalid",
        ),
        (
            "not JSON",
            {"content": b"RETURN 1", "headers": {**headers, "Content-Type": "text/plain"}},
            415,
            "Neo.ClientError.Request.Invalid",
        ),
        (
            "syntax error",
            {"json": {"statement": "RETRN 1"}, "headers": headers},
            400,
            "Neo.ClientError.Statement.SyntaxError",
        ),
        (
            # The DAG may call no procedure: an unknown one is refused as a known one would be,
            # so Neo4j's planning error tells it nothing.
            "unknown procedure",
            {"json": {"statement": "CALL no.such.proc()"}, "headers": headers},
            403,
            "Neo.ClientError.Security.Forbidden",
        ),
    ]
    for name, request, status, code in cases:
        response = gateway.post(QUERY, **request)
        assert response.status_code == status, (name, response.text)
        assert response.json()["errors"][0]["code"] == code, name
        (record,) = records_of(stack, response)
        assert record["status"] == status, name
    # A database the DAG has no grant for is refused before Neo4j is asked whether it exists.
    unknown = "/db/no_such_db/query/v2"
    response = gateway.post(unknown, json={"statement": "RETURN 1"}, headers=headers)
    assert response.status_code == 403
    assert "database_not_granted:no_such_db" in response.json()["errors"][0]["message"]

    # Granted, it is Neo4j's own answer.
    def grant_unknown(data: dict[str, Any]) -> None:
        databases = data["cyphergate"]["grants"]["dags"]["demo_reader"]["databases"]
        databases["no_such_db"] = {"read": {"labels": ["*"]}}

    with changed_policy_data(stack, grant_unknown):
        response = gateway.post(unknown, json={"statement": "RETURN 1"}, headers=headers)
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "Neo.ClientError.Database.DatabaseNotFound"


@pytest.mark.parametrize(
    "statement",
    ["USE no_such_db RETURN 1", "CALL { USE no_such_db RETURN 1 AS x } RETURN x"],
)
def test_a_use_of_a_database_without_a_grant_tells_nothing_of_whether_it_exists(
    stack: DevStack, gateway: httpx.Client, statement: str
) -> None:
    """Asked in the URL, a database without a grant is refused before Neo4j is asked; named by
    USE in a statement on a granted one, Neo4j's planning error would tell that it does not
    exist (an existing one gets the policy's 403)."""
    response = post(gateway, stack.token("demo_reader"), {"statement": statement})
    assert response.status_code == 403, response.text
    (error,) = response.json()["errors"]
    assert error["code"] == "Neo.ClientError.Security.Forbidden"
    assert "database_not_granted:no_such_db" in error["message"]
    (record,) = records_of(stack, response)
    assert record["status"] == 403
    assert record["decision"]["reasons"] == ["database_not_granted:no_such_db"]


@pytest.mark.parametrize(
    "template",
    [
        "CALL { USE %s RETURN 1 AS x } RETURN x",
        "UNWIND [1] AS i CALL { USE %s MATCH (n) RETURN n } RETURN 1",
    ],
)
def test_a_use_in_a_subquery_tells_nothing_of_whether_the_database_exists(
    stack: DevStack, gateway: httpx.Client, template: str
) -> None:
    """Found by review: in a subquery (on a database that is no composite one) Neo4j plans a
    USE of a missing database into "not found", refused as database_not_granted, but one of an
    existing database into a semantic error naming it, which came back as a 400: system, which
    demo_reader has no grant for, and a missing one must get the same refusal."""
    for name in ("system", "no_such_db"):
        response = post(gateway, stack.token("demo_reader"), {"statement": template % name})
        assert response.status_code == 403, response.text
        (error,) = response.json()["errors"]
        assert error["code"] == "Neo.ClientError.Security.Forbidden"
        assert error["message"] == f"Denied by policy: database_not_granted:{name}."
        (record,) = records_of(stack, response)
        assert record["decision"]["reasons"] == [f"database_not_granted:{name}"]


def test_odd_parameters_get_400_and_the_gateway_stays_up(
    stack: DevStack, gateway: httpx.Client
) -> None:
    typed = "application/vnd.neo4j.query"
    token = stack.token("demo_reader")
    odd = [
        ("application/json", 99999999999999999999999),
        (typed, {"$type": "Integer", "_value": "99999999999999999999999"}),
        (typed, {"$type": "ZonedDateTime", "_value": "2024-07-02T03:04:05+02:00[Mars/Base]"}),
        (typed, {"$type": "ZonedDateTime", "_value": "2024-07-02T03:04:05+05:00[Europe/Berlin]"}),
        (typed, {"$type": "Date", "_value": "0000-01-01"}),
        (typed, {"$type": "Point", "_value": "SRID=1;POINT (1 2)"}),
        (typed, {"$type": "Map", "_value": {"k": {"$type": "Nope", "_value": 1}}}),
        (typed, {"$type": "Integer"}),
    ]
    for media_type, value in odd:
        response = gateway.post(
            QUERY,
            content=json.dumps({"statement": "RETURN $x AS x", "parameters": {"x": value}}),
            headers={"Content-Type": media_type, "Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 400, (value, response.text)
        assert response.json()["errors"][0]["code"] == "Neo.ClientError.Request.Invalid"
    assert gateway.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("body", "ran"),
    [
        ('{"statement": "CREATE (:%s)", "statement": "RETURN 1 AS one"}', "RETURN 1 AS one"),
        ('{"statement": "RETURN 1 AS one", "statement": "CREATE (:%s)"}', "CREATE (:%s)"),
    ],
    ids=["write then read", "read then write"],
)
def test_a_body_naming_a_field_twice_runs_what_was_decided(
    stack: DevStack,
    gateway: httpx.Client,
    neo4j_http: httpx.Client,
    neo4j_admin: Driver,
    body: str,
    ran: str,
) -> None:
    """A statement given twice in one body: the one Neo4j's own Query API takes (the last) is
    the one decided, recorded and run, never one decided and the other run."""
    label = marker()
    content = body % label
    neo4j = neo4j_http.post(QUERY, content=content, headers={"Content-Type": "application/json"})
    assert neo4j.status_code == 202, neo4j.text
    assert (count(neo4j_admin, label) == 1) == ran.startswith("CREATE")  # Neo4j's choice
    neo4j_admin.execute_query(f"MATCH (n:`{label}`) DELETE n")
    headers = {"Authorization": f"Bearer {stack.token('demo_reader')}"}
    response = gateway.post(
        QUERY, content=content, headers={**headers, "Content-Type": "application/json"}
    )
    (decision, *_) = records_of(stack, response)
    assert decision["statement"] == ran % label if "%s" in ran else ran
    if ran.startswith("CREATE"):  # the reader DAG may not write: refused, nothing created
        assert response.status_code == 403, response.text
    else:
        assert response.json()["data"] == {"fields": ["one"], "values": [[1]]}
    assert count(neo4j_admin, label) == 0


def test_constraint_violation_is_a_client_error(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    neo4j_admin.execute_query(f"CREATE CONSTRAINT FOR (n:`{label}`) REQUIRE n.id IS UNIQUE")
    token = stack.token("demo_writer")
    assert post(gateway, token, {"statement": f"CREATE (:`{label}` {{id: 1}})"}).status_code == 202
    response = post(gateway, token, {"statement": f"CREATE (:`{label}` {{id: 1}})"})
    assert response.status_code == 400
    assert (
        response.json()["errors"][0]["code"] == "Neo.ClientError.Schema.ConstraintValidationFailed"
    )
    _, outcome = records_of(stack, response)
    assert outcome["error"]["code"] == "Neo.ClientError.Schema.ConstraintValidationFailed"
    assert count(neo4j_admin, label) == 1


# ----------------------------------------------------------------------------- faults


def test_opa_down_fails_closed(stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver) -> None:
    label = marker()
    token = stack.token("demo_writer")
    stack.stop_service("opa")
    try:
        response = post(gateway, token, {"statement": f"CREATE (:`{label}`)"})
        ready = gateway.get("/readyz")
    finally:
        stack.start_service("opa")
    assert response.status_code == 503
    assert response.json()["errors"][0]["code"] == "Neo.TransientError.General.PolicyUnavailable"
    assert count(neo4j_admin, label) == 0
    (record,) = records_of(stack, response)
    assert record["status"] == 503 and record["error"]["reason"].startswith("opa_")
    assert ready.status_code == 503 and ready.json()["checks"]["opa"] == "unavailable"
    assert post(gateway, token, {"statement": f"CREATE (:`{label}`)"}).status_code == 202


def test_show_transactions_carries_the_dag(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    token = stack.token("demo_reader")
    slow = "UNWIND range(1, 40000000) AS x WITH x WHERE x % 7 = 0 RETURN count(x) AS n"
    responses: list[httpx.Response] = []
    worker = threading.Thread(
        target=lambda: responses.append(post(gateway, token, {"statement": slow}))
    )
    worker.start()
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while worker.is_alive() and time.monotonic() < deadline and not seen:
        records, _, _ = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD currentQuery, metaData, username "
            "WHERE currentQuery CONTAINS 'range(1, 40000000)' RETURN metaData, username"
        )
        seen = [dict(r) for r in records if r["metaData"]]
        time.sleep(0.05)
    worker.join()
    assert seen, "the slow query was never seen running"
    metadata = seen[0]["metaData"]
    assert metadata["dag_id"] == "demo_reader"
    # Neo4j itself names the DAG: the statement runs as the DAG's leased user.
    assert seen[0]["username"].startswith(LEASE_PREFIX + "demo_reader_")
    (response,) = responses
    assert response.status_code == 202
    assert metadata["request_id"] == response.headers["X-CypherGate-Request-ID"]
    decision, _ = records_of(stack, response)
    assert metadata["decision_id"] == decision["decision"]["decision_id"]


# ----------------------------------------------------------------------------- audit


def test_audit_verify_names_the_record_with_one_changed_byte(
    stack: DevStack, gateway: httpx.Client, tmp_path: Path
) -> None:
    post(gateway, stack.token("demo_reader"), {"statement": "RETURN 'tamper target' AS x"})
    good = cyphergate("audit", "verify", "--config", str(stack.gateway_config_path))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "hash chain intact" in good.stdout and "signatures checked" in good.stdout

    copy = tmp_path / "audit.sqlite3"
    with sqlite3.connect(stack.audit_path) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    with sqlite3.connect(copy) as db:
        (seq,) = db.execute(
            "SELECT seq FROM records WHERE body LIKE '%tamper target%' ORDER BY seq LIMIT 1"
        ).fetchone()
        # The triggers refuse edits through SQLite; an attacker with the file drops them first.
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE records SET body = body WHERE seq = ?", (seq,))
        db.execute("DROP TRIGGER records_no_update")
        db.execute(
            "UPDATE records SET body = replace(body, 'tamper target', 'tamper targes') "
            "WHERE seq = ?",
            (seq,),
        )
    bad = cyphergate("audit", "verify", "--log", str(copy))
    assert bad.returncode == 1
    assert f"record {seq}: content does not match its hash" in bad.stdout


def test_audit_query_filters_by_dag_and_decision(stack: DevStack, gateway: httpx.Client) -> None:
    post(gateway, stack.token("demo_unlisted"), {"statement": "RETURN 1"})
    result = cyphergate(
        "audit",
        "query",
        "--config",
        str(stack.gateway_config_path),
        "--dag",
        "demo_unlisted",
        "--decision",
        "deny",
        "--format",
        "json",
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert rows and all(r["dag"] == "demo_unlisted" and r["decision"] == "deny" for r in rows)
    assert {"seq", "time", "dag", "database", "statement", "decision", "reasons"} <= set(rows[0])
    table = cyphergate(
        "audit", "query", "--config", str(stack.gateway_config_path), "--dag", "demo_unlisted"
    )
    assert "dag_not_granted" in table.stdout and "SEQ" in table.stdout


def test_readyz_and_healthz(gateway: httpx.Client) -> None:
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {
        "neo4j": "ok",
        "opa": "ok",
        "identity": "ok",
        "audit": "ok",
        "secret_store": "ok",
        "leases": "ok",
    }


def test_devstack_status_documents_the_contract(status: dict[str, Any]) -> None:
    for path in (
        "neo4j.bolt_uri",
        "neo4j.http_uri",
        "neo4j.user",
        "neo4j.password",
        "opa.url",
        "oidc.issuer",
        "gateway_url",
        "gateway_config",
    ):
        value: Any = status
        for part in path.split("."):
            value = value[part]
        assert value, path


def test_a_client_hanging_up_mid_body_is_no_internal_error(
    stack: DevStack, gateway: httpx.Client, status: dict[str, Any]
) -> None:
    def internal_errors() -> float:
        page = gateway.get("/metrics").text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in page.splitlines()
            if line.startswith("cyphergate_requests_total{") and 'status="500"' in line
        )

    before = internal_errors()
    with AuditReader(stack.audit_path) as reader:
        head = reader.head()
    url = httpx.URL(status["gateway_url"])
    body = json.dumps({"statement": "RETURN 1"}).encode()
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(
            b"POST /db/neo4j/query/v2 HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {stack.token('demo_reader')}\r\n".encode()
            + f"Content-Length: {len(body) + 100}\r\n\r\n".encode()
            + body[:10]
        )
        time.sleep(0.5)  # the gateway has begun reading the body
    deadline = time.monotonic() + 10
    found: list[dict[str, Any]] = []
    while not found and time.monotonic() < deadline:
        with AuditReader(stack.audit_path) as reader:
            after = None if head is None else head[0]
            found = [
                r
                for r in reader.query(RecordFilter(after_seq=after))
                if (r.get("error") or {}).get("reason") == "client_disconnected"
            ]
        time.sleep(0.2)
    assert len(found) == 1, "the hang-up was not recorded as client_disconnected"
    assert found[0]["status"] == 499 and found[0]["event"] == "decision"
    assert internal_errors() == before
    log = (stack.run_dir / "gateway.log").read_text(errors="replace")
    assert f"request {found[0]['request_id']} failed inside the gateway" not in log
