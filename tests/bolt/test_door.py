"""The Bolt door with the official Python driver (sync and async), against the real stack."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import warnings
from typing import Any

import httpx
import neo4j
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from neo4j import Driver
from neo4j.exceptions import AuthError, ClientError, Neo4jError

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import AUDIENCE
from proxy.neo4j.shown import UNKNOWN_NAME_WARNINGS

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


def test_explicit_transactions(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    tag = f"tx-{uuid.uuid4().hex[:8]}"
    create = "CREATE (n:BoltTx {tag: $tag, n: $n}) RETURN n.n AS n"
    with bolt(status, neo4j.bearer_auth(stack.token("demo_writer"))) as writer:
        with writer.session(database="neo4j") as session:
            # Managed: execute_write runs BEGIN, the statements, COMMIT.
            def two(tx: neo4j.ManagedTransaction) -> list[int]:
                first = tx.run(create, tag=tag, n=1).single(strict=True)["n"]
                second = tx.run(create, tag=tag, n=2).single(strict=True)["n"]
                return [first, second]

            assert session.execute_write(two) == [1, 2]
            # Explicit, rolled back: the transaction sees its own write, then it is gone.
            with session.begin_transaction() as tx:
                tx.run(create, tag=tag, n=3).consume()
                seen = tx.run("MATCH (n:BoltTx {tag: $tag}) RETURN count(n) AS c", tag=tag)
                assert seen.single(strict=True)["c"] == 3
                tx.rollback()
        records, _, _ = writer.execute_query(
            "MATCH (n:BoltTx {tag: $tag}) RETURN n.n AS n ORDER BY n", tag=tag, database_="neo4j"
        )
        assert [r["n"] for r in records] == [1, 2]
    stored, _, _ = neo4j_admin.execute_query(
        "MATCH (n:BoltTx {tag: $tag}) RETURN count(n) AS c", tag=tag
    )
    assert stored[0]["c"] == 2
    with AuditReader(stack.audit_path) as log:
        trail = list(log.query(RecordFilter()))
    # The statements carry the tag as a parameter; this module alone uses the label BoltTx.
    ours = {r["transaction"]["id"] for r in trail if "BoltTx" in (r.get("statement") or "")}
    ends = sorted(
        r["transaction"]["action"]
        for r in trail
        if r["event"] == "transaction" and r["transaction"]["id"] in ours
    )
    # execute_write, the rolled-back one, and execute_query (a managed transaction too).
    assert ends == ["commit", "commit", "rollback"], "each transaction leaves its end on record"


def test_a_managed_write_may_read_first(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    tag = f"rw-{uuid.uuid4().hex[:8]}"

    def read_then_write(tx: neo4j.ManagedTransaction) -> int:
        seen = tx.run("MATCH (n:BoltReadWrite {tag: $tag}) RETURN count(n) AS c", tag=tag)
        before = int(seen.single(strict=True)["c"])
        tx.run("CREATE (:BoltReadWrite {tag: $tag, n: 1})", tag=tag).consume()
        return before

    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_writer"))) as writer,
        writer.session(database="neo4j") as session,
    ):
        assert session.execute_write(read_then_write) == 0
    stored, _, _ = neo4j_admin.execute_query(
        "MATCH (n:BoltReadWrite {tag: $tag}) RETURN count(n) AS c", tag=tag
    )
    assert stored[0]["c"] == 1


def test_a_refused_statement_rolls_the_transaction_back(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    tag = f"txrefused-{uuid.uuid4().hex[:8]}"
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_labels"))) as driver,
        driver.session(database="neo4j") as session,
    ):
        tx = session.begin_transaction()
        tx.run("CREATE (p:Person {tag: $tag})", tag=tag).consume()  # demo_labels writes :Person
        with pytest.raises(Neo4jError) as refused:
            tx.run("CREATE (s:Secret {tag: $tag})", tag=tag).consume()
        assert refused.value.code == "Neo.ClientError.Security.Forbidden"
        tx.close()
    left, _, _ = neo4j_admin.execute_query("MATCH (n {tag: $tag}) RETURN count(n) AS c", tag=tag)
    assert left[0]["c"] == 0, "the allowed first statement was rolled back with the refused one"


def test_several_results_open_in_one_transaction(stack: DevStack, status: dict[str, Any]) -> None:
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j", fetch_size=3) as session,
        session.begin_transaction() as tx,
    ):
        first = tx.run("UNWIND range(1, 10) AS i RETURN i")
        head = [next(first)["i"] for _ in range(2)]
        second = tx.run("UNWIND range(100, 104) AS j RETURN j")
        assert [r["j"] for r in second] == [100, 101, 102, 103, 104]
        assert head + [r["i"] for r in first] == list(range(1, 11))
        tx.commit()


def test_an_expired_token_is_refreshed_by_the_auth_manager(
    stack: DevStack, status: dict[str, Any]
) -> None:
    expiring = short_lived_token(stack, "demo_reader", seconds=2)
    fresh = stack.token("demo_reader")
    given: list[str] = []

    def provider() -> neo4j.auth_management.ExpiringAuth:
        token = expiring if not given else fresh
        given.append(token)
        return neo4j.auth_management.ExpiringAuth(neo4j.bearer_auth(token))

    manager = neo4j.auth_management.AuthManagers.bearer(provider)
    with bolt(status, manager) as driver:
        assert driver.execute_query("RETURN 1 AS one", database_="neo4j").records[0]["one"] == 1
        time.sleep(3)  # the first token expires while its connection stays open
        assert driver.execute_query("RETURN 2 AS two", database_="neo4j").records[0]["two"] == 2
    assert given == [expiring, fresh]


class Renewing(neo4j.auth_management.AuthManager):
    """An auth manager whose token is new every time the driver asks (as one whose tokens live
    a minute is, over an hour): the driver renews it on its pooled connection (LOGOFF, LOGON)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.given = tokens, 0

    def get_auth(self) -> neo4j.Auth:
        self.given += 1
        return neo4j.bearer_auth(self.tokens[self.given % len(self.tokens)])

    def handle_security_exception(
        self, auth: tuple[str, str] | neo4j.Auth | None, error: Neo4jError
    ) -> bool:
        return False


def test_a_driver_renews_its_token_on_one_connection_as_often_as_it_likes(
    stack: DevStack, status: dict[str, Any]
) -> None:
    """Found by review: each renewal's LOGON counted towards the 32 messages a connection may
    send before a LOGON, over the connection's life, so the 31st renewal on a pooled connection
    failed (Request.Invalid) and the connection was closed."""
    manager = Renewing([stack.token("demo_reader"), stack.token("demo_reader")])
    uri = status["gateway_bolt_uri"]
    with neo4j.GraphDatabase.driver(uri, auth=manager, max_connection_pool_size=1) as driver:
        for n in range(40):
            answer = driver.execute_query("RETURN $n AS n", n=n, database_="neo4j")
            assert answer.records[0]["n"] == n
    assert manager.given >= 40


def short_lived_token(stack: DevStack, dag: str, *, seconds: int) -> str:
    """A token the stack's provider would issue for ``dag``, expiring in ``seconds``."""
    keys = json.loads((stack.run_dir / "oidc-keys.json").read_text())["keys"]
    key = KeySet.import_key_set({"keys": keys[:1]}).keys[0]
    now = int(time.time())
    claims = {
        "iss": stack.issuer(),
        "aud": AUDIENCE,
        "sub": dag,
        "client_id": dag,
        "dag_id": dag,
        "iat": now,
        "exp": now + seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": key.kid}, claims, key)


def test_explain_and_profile(stack: DevStack, status: dict[str, Any]) -> None:
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j") as session,
    ):
        explained = session.run("EXPLAIN MATCH (n:Person) RETURN n.name AS name")
        assert explained.data() == []
        summary = explained.consume()
        assert summary.plan is not None and summary.plan["operatorType"].startswith("Produce")
        # Neo4j's estimates count the whole graph, unreadable nodes too: none is shown.
        operators, estimates = [summary.plan], []
        while operators:
            operator = operators.pop()
            estimates += [key for key in operator["args"] if key.startswith("Estimated")]
            operators += operator.get("children", [])
        assert summary.plan["args"]["Details"] and estimates == []
        with pytest.raises(Neo4jError) as write:  # decided as the statement it explains
            session.run("EXPLAIN CREATE (:Explained)").consume()
        assert write.value.code == "Neo.ClientError.Security.Forbidden"
        with pytest.raises(Neo4jError) as profile:
            session.run("PROFILE MATCH (n:Person) RETURN n").consume()
        assert profile.value.code == "Neo.ClientError.Request.Invalid"
        assert "PROFILE is not offered" in str(profile.value.message)


def test_neo4j_notifications_reach_the_caller(
    stack: DevStack, status: dict[str, Any], gateway: httpx.Client
) -> None:
    """A deprecation reaches the caller; a warning that a name is unknown does not (whether a
    label or property key exists anywhere, on nodes it may not read too, is not its to learn)."""
    statement = "MATCH (n:NoSuchLabelAnywhere) WHERE n.noSuchKeyAnywhere = 1 RETURN id(n)"
    deprecated = "Neo.ClientNotification.Statement.FeatureDeprecationWarning"
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j") as session,
    ):
        summary = session.run(statement).consume()
    assert [n["code"] for n in summary.metadata["notifications"]] == [deprecated]
    assert "id" in summary.metadata["notifications"][0]["description"]
    answer = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert [n["code"] for n in answer.json()["notifications"]] == [deprecated]


def test_a_statements_own_time_out_holds_when_shorter_than_the_policys(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    """``Query(text, timeout=...)`` on an auto-commit statement: Neo4j ends it then, and so does
    the gateway (the policy's 30 s only bounds it from above)."""
    slow = neo4j.Query(
        "UNWIND range(1, 2000000000) AS x WITH x WHERE x < 0 RETURN count(x) AS c", timeout=1
    )
    with neo4j_admin.session(database="neo4j") as session, pytest.raises(ClientError) as direct:
        session.run(slow).consume()
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j") as session,
    ):
        started = time.monotonic()
        with pytest.raises(ClientError) as through:
            session.run(slow).consume()
        elapsed = time.monotonic() - started
    assert elapsed < 10, elapsed
    assert through.value.code == direct.value.code
    assert "TransactionTimedOut" in str(through.value.code)


@pytest.mark.parametrize(
    ("driver_config", "session_config"),
    [
        ({"notifications_min_severity": "OFF"}, {}),
        ({}, {"notifications_min_severity": "OFF"}),
        ({"notifications_min_severity": "OFF"}, {"notifications_min_severity": "WARNING"}),
        ({}, {"notifications_disabled_classifications": ["DEPRECATION"]}),
        ({"notifications_disabled_classifications": ["PERFORMANCE"]}, {}),
    ],
)
def test_the_notifications_a_driver_asks_for_are_the_ones_it_gets(
    stack: DevStack,
    status: dict[str, Any],
    driver_config: dict[str, Any],
    session_config: dict[str, Any],
) -> None:
    """Bolt 5.2+'s notification filters (driver-wide: HELLO; per session: BEGIN and RUN) hold
    through the gateway as straight to Neo4j."""
    statement = "MATCH (n:NoSuchLabelAnywhere) RETURN id(n)"  # a deprecation, a WARNING

    def notified(summary: neo4j.ResultSummary) -> list[dict[str, Any]]:
        with warnings.catch_warnings():  # the driver's own form, whatever the Bolt version
            warnings.simplefilter("ignore", DeprecationWarning)
            return summary.notifications or []

    def codes(driver: Driver) -> list[str]:
        with driver:
            with driver.session(database="neo4j", **session_config) as session:
                auto = notified(session.run(statement).consume())
            with (
                driver.session(database="neo4j", **session_config) as session,
                session.begin_transaction() as tx,
            ):
                inside = notified(tx.run(statement).consume())
        # (An unknown label's warning is Neo4j's alone: the gateway never tells what exists.)
        return [n["code"] for n in [*auto, *inside] if n["code"] not in UNKNOWN_NAME_WARNINGS]

    neo4j_status = status["neo4j"]
    straight = neo4j.GraphDatabase.driver(
        neo4j_status["bolt_uri"],
        auth=(neo4j_status["user"], neo4j_status["password"]),
        **driver_config,
    )
    auth = neo4j.bearer_auth(stack.token("demo_reader"))
    through = neo4j.GraphDatabase.driver(status["gateway_bolt_uri"], auth=auth, **driver_config)
    assert codes(through) == codes(straight)


@pytest.mark.parametrize("statement", ["RETRN 1", "MATCH (n)\nRETURN y AS x", "RETURN $"])
def test_a_statements_error_names_its_own_text_and_positions(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver, statement: str
) -> None:
    """Neo4j's error about a statement the gateway planned (as EXPLAIN and the statement)
    quotes the statement and counts positions in it, as Neo4j does straight."""
    with pytest.raises(ClientError) as straight:
        neo4j_admin.execute_query(statement, database_="neo4j")
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        pytest.raises(ClientError) as through,
    ):
        driver.execute_query(statement, database_="neo4j")
    assert through.value.code == straight.value.code
    message = str(through.value.message)
    assert message[: message.rindex(" (request ")] == straight.value.message


def test_caller_metadata_is_context_not_identity(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = f"BoltMeta{uuid.uuid4().hex[:10]}"
    forged = {"dag_id": "demo_reader", "request_id": "forged", "lineage": label}
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_writer"))) as driver,
        driver.session(database="neo4j") as session,
    ):
        tx = session.begin_transaction(metadata=forged)
        try:
            tx.run(f"CREATE (:`{label}`)").consume()
            records, _, _ = neo4j_admin.execute_query(
                "SHOW TRANSACTIONS YIELD metaData WHERE metaData.lineage = $label RETURN metaData",
                label=label,
            )
            (record,) = records
            seen = record["metaData"]
            tx.commit()
        finally:
            tx.close()
    assert seen["dag_id"] == "demo_writer" and seen["request_id"] != "forged"
    assert seen["lineage"] == label  # the caller's own keys ride along
    with AuditReader(stack.audit_path) as log:
        (decision,) = [r for r in log.query(RecordFilter(text=label)) if r["event"] == "decision"]
    assert decision["principal"]["dag"] == "demo_writer"
    assert decision["transaction"]["metadata"]["lineage"] == label


def test_an_auto_commit_statements_metadata_is_context_not_identity(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = f"BoltAutoMeta{uuid.uuid4().hex[:10]}"
    forged = {"dag_id": "demo_writer", "request_id": "forged", "lineage": label}
    query = neo4j.Query("UNWIND range(1, 50000) AS i RETURN i", metadata=forged)
    with (
        bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver,
        driver.session(database="neo4j", fetch_size=10) as session,
    ):
        result = session.run(query)
        first = result.peek()  # Neo4j's transaction stays open while the rows are unread
        assert first is not None and first["i"] == 1
        records, _, _ = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD metaData WHERE metaData.lineage = $label RETURN metaData",
            label=label,
        )
        (record,) = records
        seen = record["metaData"]
        assert len(result.values()) == 50000
    assert seen["dag_id"] == "demo_reader" and seen["request_id"] != "forged"
    assert seen["lineage"] == label  # the caller's own keys ride along
    with AuditReader(stack.audit_path) as log:
        trail = [r for r in log.query(RecordFilter()) if r["request_id"] == seen["request_id"]]
    assert trail[0]["principal"]["dag"] == "demo_reader"
    # The caller's metadata as context; no id: the statement's transaction is its own.
    assert [(r["event"], r["transaction"]) for r in trail] == [
        ("decision", {"metadata": forged}),
        ("outcome", None),
    ]
    assert trail[1]["rows"] == 50000


def test_a_transaction_is_its_callers_and_bounded_per_identity(
    stack: DevStack, status: dict[str, Any]
) -> None:
    """BEGIN verifies the caller again and names it on the transaction (its end record names it
    though no statement ran), and one identity holds at most
    ``server.max_transactions_per_identity`` (16) Bolt transactions across its connections: so
    many held, each keeping a pooled Neo4j connection of the DAG's, starved every other caller
    sharing the DAG."""
    with bolt(status, neo4j.bearer_auth(stack.token("demo_reader"))) as driver:
        sessions = [driver.session(database="neo4j") for _ in range(17)]
        try:
            held = [session.begin_transaction() for session in sessions[:16]]
            with pytest.raises(Neo4jError) as refused:
                sessions[16].begin_transaction().run("RETURN 1").consume()
            assert refused.value.code == (
                "Neo.TransientError.Transaction.MaximumTransactionLimitReached"
            )
            held[0].commit()  # a slot given back is a slot to take
            again = sessions[0].begin_transaction()
            assert again.run("RETURN 1 AS one").single(strict=True)["one"] == 1
            again.rollback()
            for transaction in held[1:]:
                transaction.rollback()
        finally:
            for session in sessions:
                session.close()
    request_id = refused.value.message.rsplit("(request ", 1)[1].rstrip(")")
    with AuditReader(stack.audit_path) as log:
        (refusal,) = log.query(RecordFilter(request_id=request_id))
        ends = list(log.query(RecordFilter(event="transaction")))[-17:]
    assert refusal["error"]["reason"] == "max_transactions_per_identity"
    assert refusal["principal"]["subject"]
    # Every one of them ended on record, each naming its caller though none ran a statement.
    assert all(r["principal"] and r["principal"]["dag"] == "demo_reader" for r in ends)


def test_commit_verifies_the_caller_again(stack: DevStack, status: dict[str, Any]) -> None:
    """A token that expired inside the transaction is refused at COMMIT, as over HTTP, and the
    transaction is rolled back: nothing it wrote is kept."""
    tag = f"late-{uuid.uuid4().hex[:8]}"
    token = short_lived_token(stack, "demo_writer", seconds=3)
    with (
        bolt(status, neo4j.bearer_auth(token)) as driver,
        driver.session(database="neo4j") as session,
    ):
        transaction = session.begin_transaction()
        transaction.run("CREATE (:BoltLate {tag: $tag})", tag=tag).consume()
        time.sleep(4)
        with pytest.raises(Neo4jError) as refused:
            transaction.commit()
    assert refused.value.code == "Neo.ClientError.Security.TokenExpired"
    with bolt(status, neo4j.bearer_auth(stack.token("demo_writer"))) as reader:
        kept, _, _ = reader.execute_query(
            "MATCH (n:BoltLate {tag: $tag}) RETURN count(n) AS c", tag=tag, database_="neo4j"
        )
    assert kept[0]["c"] == 0
