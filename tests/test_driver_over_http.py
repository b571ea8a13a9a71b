"""The zero-code path: the official neo4j driver, pointed at the gateway with an http:// URI.

The driver speaks Neo4j's Query API (typed JSON) over HTTP. Through CypherGate, with bearer
authentication, auto-commit statements (``session.run``) and explicit transactions
(``execute_query``, ``execute_read``/``execute_write``, ``begin_transaction``) work, and every
statement of a transaction is decided and recorded on its own. Beside the driver, plain HTTP
requests check what the driver cannot send (a DAG named per request, another caller's token).
"""

from __future__ import annotations

import asyncio
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import neo4j
import pytest
from neo4j import Driver, ManagedTransaction
from neo4j.exceptions import Neo4jError

from proxy.api.state import STATE_KEY, Runtime
from proxy.app import create_app
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack
from proxy.devstack.state import LEASE_PREFIX
from proxy.gateway.call import Call, Statement
from proxy.settings import Settings
from tests.conftest import MULTI_DAG
from tests.second_gateway import SecondGateway

pytestmark = [
    pytest.mark.integration,
    # The driver's Query API support is a preview, and says so with a warning on every driver.
    pytest.mark.filterwarnings("ignore::neo4j.warnings.PreviewWarning"),
]

TX = "/db/neo4j/query/v2/tx"


def driver(status: dict[str, Any], token: str) -> Driver:
    return neo4j.GraphDatabase.driver(status["gateway_url"], auth=neo4j.bearer_auth(token))


def write_as_demo_writer(
    stack: DevStack, status: dict[str, Any], work: Callable[[ManagedTransaction], int]
) -> int:
    """``work`` in a managed write transaction (``execute_write``) through the gateway."""
    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
    ):
        return session.execute_write(work)


def marker() -> str:
    return "Tx" + uuid.uuid4().hex[:12]


def count(neo4j_admin: Driver, label: str) -> int:
    records, _, _ = neo4j_admin.execute_query(f"MATCH (n:`{label}`) RETURN count(n) AS c")
    return int(records[0]["c"])


def transaction_of(audit: Path, text: str) -> list[dict[str, Any]]:
    """Every record of the transaction in which a statement containing ``text`` ran."""
    with AuditReader(audit) as log:
        (first, *_) = [r for r in log.query(RecordFilter(text=text)) if r["event"] == "decision"]
        transaction_id = first["transaction"]["id"]
        return [
            r
            for r in log.query(RecordFilter(since=first["time"]))
            if (r.get("transaction") or {}).get("id") == transaction_id
        ]


def records_of(stack: DevStack, response: httpx.Response) -> list[dict[str, Any]]:
    with AuditReader(stack.audit_path) as log:
        request_id = response.headers["X-CypherGate-Request-ID"]
        return list(log.query(RecordFilter(request_id=request_id)))


def bearer(token: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **headers}


def test_session_run_through_the_gateway(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
    ):
        summary = session.run(
            "CREATE (n:DriverOverHttp {name: $name, born: $born}) RETURN n.name AS name",
            name="Ada",
            born=neo4j.time.Date(1815, 12, 10),
        )
        assert [record["name"] for record in summary] == ["Ada"]
    with (
        driver(status, stack.token("demo_reader")) as reader,
        reader.session(database="neo4j") as session,
    ):
        record = session.run(
            "MATCH (n:DriverOverHttp) RETURN n, n.born AS born, 9007199254740993 AS big"
        ).single()
        assert record is not None
        assert record["n"]["name"] == "Ada"
        assert record["born"] == neo4j.time.Date(1815, 12, 10)
        assert record["big"] == 9007199254740993
        with pytest.raises(Neo4jError) as denied:
            session.run("CREATE (:DriverOverHttp {name: 'Mallory'})").consume()
        assert denied.value.code == "Neo.ClientError.Security.Forbidden"
        assert "write_not_granted" in str(denied.value.message)
    names, _, _ = neo4j_admin.execute_query("MATCH (n:DriverOverHttp) RETURN n.name AS name")
    assert [r["name"] for r in names] == ["Ada"]


def test_execute_query_runs_in_a_transaction_of_its_own(
    stack: DevStack, status: dict[str, Any]
) -> None:
    label = marker()
    with driver(status, stack.token("demo_reader")) as reader:
        records, _, _ = reader.execute_query(f"RETURN '{label}' AS x", database_="neo4j")
    assert [r["x"] for r in records] == [label]
    decision, outcome, ended = transaction_of(stack.audit_path, label)
    assert (decision["event"], outcome["event"], ended["event"]) == (
        "decision",
        "outcome",
        "transaction",
    )
    assert decision["decision"]["allow"] is True and outcome["status"] == 202
    assert ended["transaction"]["action"] == "commit" and ended["status"] == 202
    # demo_reader may only read: its transactions are READ ones.
    assert decision["access_mode"] == ended["access_mode"] == "READ"


def test_execute_write_commits_several_statements_at_once(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = marker()

    def work(tx: ManagedTransaction) -> int:
        tx.run(f"CREATE (:`{label}` {{n: 1}})").consume()
        tx.run(f"CREATE (:`{label}` {{n: $n}})", n=2).consume()
        assert count(neo4j_admin, label) == 0  # nothing is visible before the commit
        record = tx.run(f"MATCH (n:`{label}`) RETURN count(n) AS c").single()
        return -1 if record is None else int(record["c"])

    assert write_as_demo_writer(stack, status, work) == 2
    assert count(neo4j_admin, label) == 2
    records = transaction_of(stack.audit_path, label)
    assert [r["event"] for r in records] == [*["decision", "outcome"] * 3, "transaction"]
    assert all(r["principal"]["dag"] == "demo_writer" for r in records)
    assert len({r["request_id"] for r in records}) == 4  # three statements and the commit
    ended = records[-1]
    assert ended["transaction"]["statements"] == 3 and ended["status"] == 202
    assert ended["credential"]["user"].startswith(LEASE_PREFIX + "demo_writer_")


def test_a_rolled_back_transaction_changes_nothing(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = marker()
    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
        session.begin_transaction() as tx,
    ):
        tx.run(f"CREATE (:`{label}`)").consume()
        tx.rollback()
    assert count(neo4j_admin, label) == 0
    ended = transaction_of(stack.audit_path, label)[-1]
    assert ended["transaction"]["action"] == "rollback"
    assert ended["transaction"]["cause"] == "client"


def test_a_refused_statement_rolls_back_what_came_before_it(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = marker()
    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
        pytest.raises(Neo4jError) as refused,
        session.begin_transaction() as tx,
    ):
        tx.run(f"CREATE (:`{label}`)").consume()
        tx.run(f"CALL db.labels() YIELD label AS `{label}` RETURN 1").consume()
    assert refused.value.code == "Neo.ClientError.Security.Forbidden"
    assert "procedure_not_granted:db.labels" in str(refused.value.message)
    assert count(neo4j_admin, label) == 0
    allowed, ran, denied, ended = transaction_of(stack.audit_path, label)
    assert allowed["decision"]["allow"] is True and ran["status"] == 202
    assert denied["decision"]["allow"] is False and denied["status"] == 403
    assert denied["decision"]["reasons"] == ["procedure_not_granted:db.labels"]
    assert ended["transaction"]["cause"] == "failure"
    assert ended["request_id"] == denied["request_id"]


def test_execute_write_may_read_before_it_writes(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = marker()

    def work(tx: ManagedTransaction) -> int:
        before = tx.run(f"MATCH (n:`{label}`) RETURN count(n) AS c").single(strict=True)["c"]
        tx.run(f"CREATE (:`{label}`)").consume()
        return int(before)

    assert write_as_demo_writer(stack, status, work) == 0
    assert count(neo4j_admin, label) == 1
    records = transaction_of(stack.audit_path, label)
    # The first statement only reads, but demo_writer may write: the transaction is a WRITE one.
    assert [r["access_mode"] for r in records if r["event"] == "decision"] == ["WRITE", "WRITE"]
    assert records[-1]["transaction"]["action"] == "commit" and records[-1]["status"] == 202


def test_a_read_transaction_refuses_a_write(
    stack: DevStack, status: dict[str, Any], neo4j_admin: Driver
) -> None:
    label = marker()

    def work(tx: ManagedTransaction) -> None:
        tx.run(f"CREATE (:`{label}`)").consume()

    with (
        driver(status, stack.token("demo_writer")) as writer,
        writer.session(database="neo4j") as session,
        pytest.raises(Neo4jError) as refused,
    ):
        session.execute_read(work)
    assert refused.value.code == "Neo.ClientError.Statement.AccessMode"
    assert count(neo4j_admin, label) == 0
    decision, ended = transaction_of(stack.audit_path, label)
    assert decision["requested_access_mode"] == "READ"
    assert decision["error"]["reason"] == "transaction_read_only"
    assert ended["transaction"]["cause"] == "failure"


def test_a_transaction_acts_as_one_dag(stack: DevStack, gateway: httpx.Client) -> None:
    token = stack.client_token(MULTI_DAG.client_id)  # may act as demo_reader or demo_writer
    opened = gateway.post(
        TX,
        json={"statement": "RETURN 1"},
        headers=bearer(token, **{"X-CypherGate-DAG": "demo_reader"}),
    )
    assert opened.status_code == 202, opened.text
    path = f"{TX}/{opened.json()['transaction']['id']}"
    switched = gateway.post(
        path,
        json={"statement": "RETURN 2"},
        headers=bearer(token, **{"X-CypherGate-DAG": "demo_writer"}),
    )
    assert switched.status_code == 403
    assert "acts as DAG demo_reader" in switched.json()["errors"][0]["message"]
    decision, ended = records_of(stack, switched)
    assert decision["principal"]["dag"] == "demo_writer"
    assert decision["error"]["reason"] == "transaction_dag_changed"
    assert ended["transaction"]["cause"] == "failure"
    gone = gateway.post(path, json={}, headers=bearer(token, **{"X-CypherGate-DAG": "demo_reader"}))
    assert gone.status_code == 404


@pytest.mark.parametrize(
    ("ask", "headers", "expected", "reason"),
    [
        ("commit", {"X-CypherGate-DAG": "no_such_dag"}, 403, "dag_not_permitted"),
        ("keep-alive", {"X-CypherGate-DAG": "demo_reader"}, 403, "transaction_dag_changed"),
        ("rollback", {"X-CypherGate-DAG": "demo_writer", "X-CypherGate-Try": "x"}, 400, None),
    ],
)
def test_a_request_without_a_statement_resolves_its_dag_as_a_statement_does(
    stack: DevStack,
    gateway: httpx.Client,
    neo4j_admin: Driver,
    ask: str,
    headers: dict[str, str],
    expected: int,
    reason: str | None,
) -> None:
    """Found by review: a keep-alive, a commit without a statement and a rollback only
    authenticated, so a commit naming a DAG its identity may not act as committed DAG
    demo_writer's write (202) where a statement with the same headers was a 403."""
    label = marker()
    token = stack.client_token(MULTI_DAG.client_id)  # may act as demo_reader or demo_writer
    writer = bearer(token, **{"X-CypherGate-DAG": "demo_writer"})
    opened = gateway.post(TX, json={"statement": f"CREATE (:`{label}`)"}, headers=writer)
    assert opened.status_code == 202, opened.text
    path = f"{TX}/{opened.json()['transaction']['id']}"
    sent = bearer(token, **headers)
    if ask == "commit":
        refused = gateway.post(path + "/commit", headers=sent)
    elif ask == "keep-alive":
        refused = gateway.post(path, headers=sent)
    else:
        refused = gateway.delete(path, headers=sent)
    assert refused.status_code == expected, refused.text
    decision, ended = records_of(stack, refused)
    assert decision["error"]["reason"] == (reason or "bad_try_header")
    assert decision["principal"]["subject"] == MULTI_DAG.client_id
    assert ended["transaction"]["cause"] == "failure"
    assert gateway.post(path + "/commit", headers=writer).status_code == 404
    assert count(neo4j_admin, label) == 0  # rolled back, as after a refused statement


def test_someone_elses_transaction_is_not_found(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    owner = bearer(stack.token("demo_writer"))
    opened = gateway.post(TX, json={"statement": f"CREATE (:`{label}`)"}, headers=owner)
    assert opened.status_code == 202, opened.text
    path = f"{TX}/{opened.json()['transaction']['id']}"
    stranger = bearer(stack.token("demo_reader"))
    for response in (
        gateway.post(path, json={"statement": "RETURN 1"}, headers=stranger),
        gateway.post(path + "/commit", json={}, headers=stranger),
        gateway.delete(path, headers=stranger),
    ):
        assert response.status_code == 404
        error = response.json()["errors"][0]
        assert error["code"] == "Neo.ClientError.Transaction.TransactionNotFound"
        (record,) = records_of(stack, response)
        assert record["error"]["reason"] == "transaction_of_another_identity"
        assert record["principal"]["subject"] == "demo_reader"
    unknown = gateway.post(TX + "/no-such-transaction", json={}, headers=owner)
    assert unknown.status_code == 404 and unknown.json()["errors"] == response.json()["errors"]
    committed = gateway.post(path + "/commit", json={}, headers=owner)
    assert committed.status_code == 202, committed.text
    assert committed.json()["bookmarks"]
    assert count(neo4j_admin, label) == 1


def test_show_transactions_names_the_dag_and_the_transaction(
    stack: DevStack, gateway: httpx.Client, neo4j_admin: Driver
) -> None:
    label = marker()
    owner = bearer(stack.token("demo_writer"), **{"X-CypherGate-Task": "load"})
    opened = gateway.post(TX, json={"statement": f"CREATE (:`{label}`)"}, headers=owner)
    assert opened.status_code == 202, opened.text
    request_id = opened.headers["X-CypherGate-Request-ID"]
    records, _, _ = neo4j_admin.execute_query(
        "SHOW TRANSACTIONS YIELD metaData, username WHERE metaData.request_id = $id "
        "RETURN metaData, username",
        id=request_id,
    )
    (seen,) = records
    decision, _ = records_of(stack, opened)
    assert seen["metaData"] == {
        "dag_id": "demo_writer",
        "task_id": "load",
        "request_id": request_id,
        "decision_id": decision["decision"]["decision_id"],
        "transaction_id": decision["transaction"]["id"],
    }
    assert seen["username"].startswith(LEASE_PREFIX + "demo_writer_")
    path = f"{TX}/{opened.json()['transaction']['id']}"
    assert gateway.delete(path, headers=owner).status_code == 200


def test_caller_metadata_cannot_override_the_gateways_keys(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over HTTP a caller has no transaction metadata; the Bolt front door passes the
    driver's. An in-process gateway on the real services takes it as that front door would."""
    for name, value in stack.gateway_aws_env().items():
        monkeypatch.setenv(name, value)
    config = tomllib.loads(stack.gateway_config_path.read_text(encoding="utf-8"))
    config["audit"] = {"path": str(tmp_path / "audit.sqlite3")}
    config["server"].pop("bolt_port", None)  # the session gateway's
    config["neo4j"].update(lease_user_prefix="cg_inproc_", leases_path=str(tmp_path / "l.sqlite3"))
    app = create_app(Settings(**config))
    token = stack.token("demo_writer")
    label = marker()
    forged = {"dag_id": "demo_reader", "request_id": "forged", "transaction_id": "forged"}

    async def statement() -> Statement:
        return Statement(text=f"CREATE (:`{label}`)", parameters={})

    def show() -> dict[str, Any]:
        records, _, _ = neo4j_admin.execute_query(
            "SHOW TRANSACTIONS YIELD metaData WHERE metaData.lineage = $label RETURN metaData",
            label=label,
        )
        (record,) = records
        metadata: dict[str, Any] = record["metaData"]
        return metadata

    async def work() -> tuple[str, dict[str, Any]]:
        async with app.router.lifespan_context(app) as state:
            assert state is not None
            runtime = state[STATE_KEY]
            assert isinstance(runtime, Runtime)
            transaction = runtime.gateway.begin(
                database="neo4j",
                access_mode=None,
                bookmarks=(),
                metadata={**forged, "lineage": label},
                timeout_s=None,
            )
            call = Call("in-process-1", "neo4j", f"Bearer {token}", None, {}, statement)
            async with runtime.gateway.run(call, transaction=transaction) as rows:
                await rows.summary()
            seen = await asyncio.to_thread(show)
            await transaction.rollback()
            return transaction.id, seen

    transaction_id, seen = asyncio.run(work())
    assert seen["dag_id"] == "demo_writer"
    assert seen["request_id"] == "in-process-1"
    assert seen["transaction_id"] == transaction_id
    assert count(neo4j_admin, label) == 0
    # The audit record keeps what the caller sent, as context.
    records = transaction_of(tmp_path / "audit.sqlite3", label)
    assert records[0]["transaction"]["metadata"] == {**forged, "lineage": label}
    assert records[-1]["transaction"]["action"] == "rollback"


def test_an_idle_transaction_expires_and_is_rolled_back(
    stack: DevStack, neo4j_admin: Driver, tmp_path: Path
) -> None:
    def configure(config: dict[str, Any]) -> None:
        config["server"]["transaction_timeout_s"] = 1.0

    second = SecondGateway(stack, tmp_path / "gateway", "txexpiry", configure=configure)
    second.start()
    try:
        label = marker()
        owner = bearer(stack.token("demo_writer"))
        opened = httpx.post(
            second.url + TX, json={"statement": f"CREATE (:`{label}`)"}, headers=owner, timeout=60
        )
        assert opened.status_code == 202, opened.text
        deadline = time.monotonic() + 15
        ended: list[dict[str, Any]] = []
        while not ended and time.monotonic() < deadline:  # no request: the sweep ends it
            time.sleep(0.5)
            ended = [r for r in transaction_of(second.audit, label) if r["event"] == "transaction"]
        assert ended, "the idle transaction was not rolled back"
        assert ended[0]["transaction"]["cause"] == "expired"
        assert count(neo4j_admin, label) == 0
        late = httpx.post(
            f"{second.url}{TX}/{opened.json()['transaction']['id']}/commit",
            json={},
            headers=owner,
            timeout=60,
        )
        assert late.status_code == 404
    finally:
        second.stop()
