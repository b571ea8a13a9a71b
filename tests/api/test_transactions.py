"""The Query API's explicit transactions in-process, with fakes behind the application's seams:
the answers' shapes (as Neo4j 5.26 gives them), whose transaction is whose, expiry, the bound
on open transactions, and what each request leaves in the audit log. The same endpoints
through the neo4j driver against the real services are in tests/test_driver_over_http.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from proxy.app import create_app
from proxy.audit.record import AuditEvent
from proxy.settings import (
    AuthSettings,
    BindingSettings,
    Neo4jSettings,
    OIDCIssuerSettings,
    ServerSettings,
    Settings,
)
from tests.fakes import READER, FakeAudit, FakeExecutor, FakePolicy, fake_services

TX = "/db/neo4j/query/v2/tx"
OWNER = {"Authorization": "Bearer good"}
NEIGHBOUR = {"Authorization": "Bearer neighbour"}
TIMEOUT_S = 30.0


@dataclass
class Door:
    http: TestClient
    audit: FakeAudit
    executor: FakeExecutor
    now: list[float]
    policy: FakePolicy

    def open(self, body: dict[str, object] | None = None) -> str:
        response = self.http.post(TX, json=body or {}, headers=OWNER)
        assert response.status_code == 202, response.text
        transaction_id: str = response.json()["transaction"]["id"]
        return transaction_id

    def ended(self) -> list[AuditEvent]:
        return [e for e in self.audit.events if e.event == "transaction"]

    def reasons(self) -> list[str | None]:
        return [None if e.error is None else e.error["reason"] for e in self.audit.events]


@pytest.fixture
def door() -> Iterator[Door]:
    yield from _door()


@pytest.fixture
def two_dags() -> Iterator[Door]:
    """The owner may act as "etl" (its token asserts it) and as "other" (bound here)."""
    yield from _door(BindingSettings(oidc_issuer=READER.issuer, subject="s", dags=["other"]))


def _door(*bindings: BindingSettings) -> Iterator[Door]:
    services = fake_services()
    assert isinstance(services.audit, FakeAudit) and isinstance(services.executor, FakeExecutor)
    assert isinstance(services.policy, FakePolicy)
    # Neo4j's timeout for a transaction (its first decision's) well past the idle one, unless a
    # test says otherwise.
    services.policy.timeout_s = 10 * TIMEOUT_S
    now = [1_700_000_000.0]
    settings = Settings(
        neo4j=Neo4jSettings(password="a-long-password"),
        server=ServerSettings(transaction_timeout_s=TIMEOUT_S, max_transactions=2),
        auth=AuthSettings(
            oidc=[OIDCIssuerSettings(issuer=READER.issuer, audiences=["gw"])],
            bindings=list(bindings),
        ),
    )
    app = create_app(settings, services, clock=lambda: now[0])
    with TestClient(app) as http:
        yield Door(http, services.audit, services.executor, now, services.policy)


def test_open_run_and_commit_answer_as_neo4j_does(door: Door) -> None:
    opened = door.http.post(
        TX, json={"statement": "CREATE (:N) RETURN 1 AS x", "includeCounters": True}, headers=OWNER
    )
    assert opened.status_code == 202, opened.text
    body = opened.json()
    transaction = body.pop("transaction")
    assert body == {"data": {"fields": ["x"], "values": [[1]]}, "counters": {}}
    assert len(transaction["id"]) >= 22  # 128 random bits
    assert transaction["expires"] == "2023-11-14T22:13:50Z"  # the clock, plus 30 s
    ran = door.http.post(f"{TX}/{transaction['id']}", json={"statement": "RETURN 2"}, headers=OWNER)
    assert ran.status_code == 202
    assert ran.json() == {"data": {"fields": ["x"], "values": [[1]]}, "transaction": transaction}
    committed = door.http.post(
        f"{TX}/{transaction['id']}/commit",
        json={"statement": "RETURN 3"},
        headers={**OWNER, "Accept": "application/vnd.neo4j.query"},
    )
    assert committed.status_code == 202, committed.text
    assert committed.headers["content-type"] == "application/vnd.neo4j.query"
    assert committed.json() == {
        "data": {"fields": ["x"], "values": [[{"$type": "Integer", "_value": "1"}]]},
        "bookmarks": ["FB:committed"],
    }
    (upstream,) = door.executor.transactions
    assert upstream.ended == "commit" and len(upstream.ran) == 3
    ids = [opened, ran, committed]
    request_ids = [r.headers["X-CypherGate-Request-ID"] for r in ids]
    assert [(e.event, e.request_id) for e in door.audit.events] == [
        ("decision", request_ids[0]),
        ("outcome", request_ids[0]),
        ("decision", request_ids[1]),
        ("outcome", request_ids[1]),
        ("decision", request_ids[2]),
        ("outcome", request_ids[2]),
        ("transaction", request_ids[2]),
    ]
    assert door.http.post(f"{TX}/{transaction['id']}/commit", headers=OWNER).status_code == 404


def test_bodies_may_be_empty_where_neo4j_allows_none(door: Door) -> None:
    opened = door.http.post(TX, headers=OWNER)  # no body, no media type
    assert opened.status_code == 202, opened.text
    transaction_id = opened.json()["transaction"]["id"]
    alive = door.http.post(f"{TX}/{transaction_id}", json={"statement": ""}, headers=OWNER)
    assert alive.status_code == 202 and set(alive.json()) == {"transaction"}
    # The neo4j driver commits with its media type and no body.
    committed = door.http.post(
        f"{TX}/{transaction_id}/commit",
        headers={**OWNER, "Content-Type": "application/vnd.neo4j.query"},
    )
    assert committed.status_code == 202 and committed.json() == {"bookmarks": []}
    assert door.executor.transactions == []  # nothing ran, so nothing opened on Neo4j
    (ended,) = door.ended()
    assert ended.transaction is not None and ended.transaction["statements"] == 0


def test_a_rollback_answers_200_without_a_body(door: Door) -> None:
    transaction_id = door.open({"statement": "CREATE (:N)"})
    rolled_back = door.http.delete(f"{TX}/{transaction_id}", headers=OWNER)
    assert rolled_back.status_code == 200 and rolled_back.content == b""
    assert rolled_back.headers["X-CypherGate-Request-ID"]
    (upstream,) = door.executor.transactions
    assert upstream.ended == "rollback" and upstream.closed
    assert door.http.delete(f"{TX}/{transaction_id}", headers=OWNER).status_code == 404


def test_a_transaction_is_its_openers_alone(door: Door) -> None:
    transaction_id = door.open({"statement": "CREATE (:N)"})
    unknown = door.http.post(f"{TX}/no-such-id", json={"statement": "RETURN 1"}, headers=OWNER)
    theirs = door.http.post(
        f"{TX}/{transaction_id}", json={"statement": "RETURN 1"}, headers=NEIGHBOUR
    )
    elsewhere = door.http.post(
        f"/db/other/query/v2/tx/{transaction_id}/commit", json={}, headers=OWNER
    )
    for response in (unknown, theirs, elsewhere):
        assert response.status_code == 404
        assert response.json()["errors"][0] == unknown.json()["errors"][0]
    assert unknown.json()["errors"][0]["code"] == "Neo.ClientError.Transaction.TransactionNotFound"
    assert door.reasons()[-3:] == [
        "transaction_unknown",
        "transaction_of_another_identity",
        "transaction_of_another_database",
    ]
    assert door.audit.events[-2].principal is not None
    assert door.audit.events[-2].principal["subject"] == "t"
    # Untouched by either: the owner commits it.
    committed = door.http.post(f"{TX}/{transaction_id}/commit", headers=OWNER)
    assert committed.status_code == 202, committed.text


def test_a_failed_statement_ends_the_transaction(door: Door) -> None:
    door.executor.fail_on = "1 / 0"
    transaction_id = door.open({"statement": "CREATE (:N)"})
    failed = door.http.post(
        f"{TX}/{transaction_id}", json={"statement": "RETURN 1 / 0"}, headers=OWNER
    )
    assert failed.status_code == 400
    assert failed.json()["errors"][0]["code"] == "Neo.ClientError.Statement.ArithmeticError"
    (ended,) = door.ended()
    assert ended.transaction is not None and ended.transaction["cause"] == "failure"
    gone = door.http.post(f"{TX}/{transaction_id}", json={"statement": "RETURN 1"}, headers=OWNER)
    assert gone.status_code == 404
    assert door.reasons()[-1] == "transaction_unknown"


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"X-CypherGate-DAG": "no_such_dag"}, 403, "dag_not_permitted"),
        ({"X-CypherGate-DAG": "other"}, 403, "transaction_dag_changed"),
        ({"X-CypherGate-DAG": "etl", "X-CypherGate-Try": "x"}, 400, "bad_try_header"),
        ({}, 400, "dag_ambiguous"),
    ],
)
@pytest.mark.parametrize("ask", ["keep-alive", "commit", "rollback"])
def test_a_request_without_a_statement_resolves_its_dag_as_a_statement_does(
    two_dags: Door, ask: str, headers: dict[str, str], status: int, reason: str
) -> None:
    """Found by review: a keep-alive, a commit without a statement and a rollback only
    authenticated their caller, so a commit naming a DAG its identity may not act as (or a bad
    try number) committed the transaction's writes where a statement with the same headers was
    refused. Refused now, recorded, and the transaction rolled back as a refused statement's."""
    etl = {**OWNER, "X-CypherGate-DAG": "etl"}
    opened = two_dags.http.post(TX, json={"statement": "CREATE (:N)"}, headers=etl)
    assert opened.status_code == 202, opened.text
    transaction_id = opened.json()["transaction"]["id"]
    sent = {**OWNER, **headers}
    if ask == "keep-alive":
        refused = two_dags.http.post(f"{TX}/{transaction_id}", headers=sent)
    elif ask == "commit":
        refused = two_dags.http.post(f"{TX}/{transaction_id}/commit", headers=sent)
    else:
        refused = two_dags.http.delete(f"{TX}/{transaction_id}", headers=sent)
    assert refused.status_code == status, refused.text
    (upstream,) = two_dags.executor.transactions
    assert upstream.ended == "rollback" and upstream.closed  # nothing committed
    refusal, ended = two_dags.audit.events[-2:]
    assert refusal.request_id == refused.headers["X-CypherGate-Request-ID"]
    assert refusal.error is not None and refusal.error["reason"] == reason
    assert ended.transaction is not None and ended.transaction["cause"] == "failure"
    gone = two_dags.http.post(f"{TX}/{transaction_id}/commit", headers=etl)
    assert gone.status_code == 404


@pytest.mark.parametrize(
    "body", [b'{"statement": "RETURN 1", "impersonatedUser": "neo4j"}', b'{"statement": 1}', b"{"]
)
@pytest.mark.parametrize("ask", ["statement", "commit"])
def test_a_request_whose_body_is_refused_ends_the_transaction(
    door: Door, ask: str, body: bytes
) -> None:
    """A request to a transaction refused for its body (400: not JSON, a field the gateway does
    not take, such as ``impersonatedUser``) was recorded and answered, but left the transaction
    open: a commit refused so committed nothing, and the next commit committed its writes,
    where a refused statement, or a commit refused for its headers, ends it. (Over Bolt, a
    refused message fails the transaction too.) It is rolled back as theirs are."""
    transaction_id = door.open({"statement": "CREATE (:N)"})
    url = f"{TX}/{transaction_id}" + ("/commit" if ask == "commit" else "")
    sent = {**OWNER, "Content-Type": "application/json"}
    refused = door.http.post(url, content=body, headers=sent)
    assert refused.status_code == 400, refused.text
    (upstream,) = door.executor.transactions
    assert upstream.ended == "rollback" and upstream.closed  # nothing committed
    refusal, ended = door.audit.events[-2:]
    assert refusal.request_id == refused.headers["X-CypherGate-Request-ID"]
    assert refusal.error is not None and refusal.error["reason"] == "invalid_body"
    assert ended.transaction is not None and ended.transaction["cause"] == "failure"
    assert ended.request_id == refusal.request_id
    gone = door.http.post(f"{TX}/{transaction_id}/commit", headers=OWNER)
    assert gone.status_code == 404


def test_a_request_without_a_statement_naming_the_transactions_dag_is_served(
    two_dags: Door,
) -> None:
    etl = {**OWNER, "X-CypherGate-DAG": "etl"}
    transaction_id = two_dags.http.post(TX, headers=etl).json()["transaction"]["id"]
    assert two_dags.http.post(f"{TX}/{transaction_id}", headers=etl).status_code == 202
    assert two_dags.http.post(f"{TX}/{transaction_id}/commit", headers=etl).status_code == 202
    transaction_id = two_dags.http.post(TX, headers=etl).json()["transaction"]["id"]
    assert two_dags.http.delete(f"{TX}/{transaction_id}", headers=etl).status_code == 200
    assert [e.error for e in two_dags.audit.events] == [None, None]


def test_an_idle_transaction_expires_and_is_rolled_back(door: Door) -> None:
    transaction_id = door.open({"statement": "CREATE (:N)"})
    door.now[0] += TIMEOUT_S - 1
    alive = door.http.post(f"{TX}/{transaction_id}", json={}, headers=OWNER)
    assert alive.status_code == 202  # and idle from now on
    door.now[0] += TIMEOUT_S + 1
    expired = door.http.post(f"{TX}/{transaction_id}", json={}, headers=OWNER)
    assert expired.status_code == 404
    (upstream,) = door.executor.transactions
    assert upstream.ended == "rollback" and upstream.closed
    (ended,) = door.ended()
    assert ended.transaction is not None and ended.transaction["cause"] == "expired"


def test_a_transaction_past_neo4js_timeout_is_not_kept_alive(door: Door) -> None:
    """Neo4j ends a transaction at its timeout (the first decision's, 5 s here), counted from
    its begin, however busy: keep-alives must not hold it open past that, with its Neo4j
    connection, its slot and its DAG's leased user (which is never dropped while held)."""
    door.policy.timeout_s = 5.0
    opened = door.http.post(TX, json={"statement": "CREATE (:N)"}, headers=OWNER)
    transaction_id = opened.json()["transaction"]["id"]
    assert opened.json()["transaction"]["expires"] == "2023-11-14T22:13:25Z"  # begun, plus 5 s
    (upstream,) = door.executor.transactions
    assert upstream.opening.timeout_s == 5.0
    door.now[0] += 4
    assert door.http.post(f"{TX}/{transaction_id}", json={}, headers=OWNER).status_code == 202
    door.now[0] += 2  # idle for 2 s only, but 6 s since it began
    late = door.http.post(f"{TX}/{transaction_id}", json={}, headers=OWNER)
    assert late.status_code == 404
    assert upstream.ended == "rollback" and upstream.closed
    (ended,) = door.ended()
    assert ended.transaction is not None and ended.transaction["cause"] == "expired"
    assert door.reasons()[-1] == "transaction_expired"


def test_open_transactions_are_bounded(door: Door) -> None:
    first, _ = door.open(), door.open()
    refused = door.http.post(TX, json={"statement": "RETURN 1"}, headers=OWNER)
    assert refused.status_code == 503
    error = refused.json()["errors"][0]
    assert error["code"] == "Neo.TransientError.Transaction.MaximumTransactionLimitReached"
    assert door.reasons()[-1] == "max_transactions"
    assert door.http.delete(f"{TX}/{first}", headers=OWNER).status_code == 200
    assert door.http.post(TX, json={}, headers=OWNER).status_code == 202


def test_an_identity_with_no_dag_opens_nothing(door: Door) -> None:
    """Found by review: any verified identity could open (and keep alive) transactions, and so
    take every slot, with nothing recorded."""
    refused = door.http.post(TX, json={}, headers={"Authorization": "Bearer stranger"})
    assert refused.status_code == 403, refused.text
    assert door.reasons() == ["identity_not_mapped"]
    assert door.http.post(TX, json={}, headers=OWNER).status_code == 202


def test_opening_is_decided_by_the_preflight_and_fails_closed(door: Door) -> None:
    """Found by review: a transaction opened on a database its DAG has no grant for (only its
    statements were decided). The opening asks the preflight: refused (403) or unanswered
    (503), it is recorded once and opens nothing."""
    door.policy.database_granted = False
    refused = door.http.post(TX, json={}, headers=OWNER)
    assert refused.status_code == 403, refused.text
    door.policy.database_granted, door.policy.fail = True, True
    unanswered = door.http.post(TX, json={"statement": "RETURN 1"}, headers=OWNER)
    assert unanswered.status_code == 503, unanswered.text
    assert [(e.event, e.status) for e in door.audit.events] == [
        ("decision", 403),
        ("decision", 503),
    ]
    assert door.reasons() == ["policy_denied", "opa_error:test"]
    assert door.audit.events[0].decision is not None
    assert door.audit.events[0].decision["reasons"] == ["dag_not_granted"]
    assert door.executor.transactions == [] and door.ended() == []


def test_a_transaction_that_ran_nothing_names_its_opener_when_it_ends(door: Door) -> None:
    transaction_id = door.open()
    door.now[0] += TIMEOUT_S + 1
    assert door.http.post(f"{TX}/{transaction_id}", json={}, headers=OWNER).status_code == 404
    (ended,) = door.ended()
    assert ended.transaction is not None and ended.transaction["cause"] == "expired"
    assert ended.principal is not None and ended.principal["subject"] == "s"
    assert ended.principal["dag"] == "etl"


def test_one_identity_cannot_hold_every_transaction() -> None:
    server = ServerSettings(max_transactions=4, max_transactions_per_identity=2)
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"), server=server)
    with TestClient(create_app(settings, fake_services())) as http:
        opened = [http.post(TX, json={}, headers=OWNER) for _ in range(3)]
        assert [response.status_code for response in opened] == [202, 202, 503]
        assert http.post(TX, json={}, headers=NEIGHBOUR).status_code == 202


def test_refusals_before_a_transaction_is_found_are_recorded(door: Door) -> None:
    unauthenticated = door.http.post(TX, json={"statement": "RETURN 1"})
    assert unauthenticated.status_code == 401
    assert "WWW-Authenticate" in unauthenticated.headers
    malformed = door.http.post(TX, json={"statement": "RETURN 1", "txMetadata": {}}, headers=OWNER)
    assert malformed.status_code == 400
    assert [(e.event, e.status) for e in door.audit.events] == [
        ("decision", 401),
        ("decision", 400),
    ]
    assert door.reasons() == ["missing_credential", "invalid_body"]
    assert door.executor.transactions == []


def test_transactions_still_open_are_rolled_back_at_shutdown() -> None:
    services = fake_services()
    assert isinstance(services.audit, FakeAudit)
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"))
    with TestClient(create_app(settings, services)) as http:
        opened = http.post(TX, json={"statement": "CREATE (:N)"}, headers=OWNER)
        assert opened.status_code == 202
    (ended,) = [e for e in services.audit.events if e.event == "transaction"]
    assert ended.transaction is not None and ended.transaction["cause"] == "closed"
