"""The Query API front door in-process, with fakes behind the application's seams: how it
translates HTTP to the request path and back. The same answers from the real services, compared
with Neo4j's own, are in tests/test_request_path.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from proxy.app import create_app
from proxy.settings import Neo4jSettings, Settings
from tests.fakes import FakeAudit, fake_services

QUERY = "/db/neo4j/query/v2"


@pytest.fixture
def client() -> Iterator[tuple[TestClient, FakeAudit]]:
    services = fake_services()
    settings = Settings(neo4j=Neo4jSettings(password="a-long-password"))
    assert isinstance(services.audit, FakeAudit)
    with TestClient(create_app(settings, services)) as test_client:
        yield test_client, services.audit


def test_an_allowed_statement_answers_as_neo4j_does(client: tuple[TestClient, FakeAudit]) -> None:
    http, audit = client
    body = {"statement": "RETURN 1 AS x", "includeCounters": True}
    response = http.post(QUERY, json=body, headers={"Authorization": "Bearer good"})
    assert response.status_code == 202, response.text
    assert response.json() == {
        "data": {"fields": ["x"], "values": [[1]]},
        "counters": {},
        "bookmarks": [],
    }
    request_id = response.headers["X-CypherGate-Request-ID"]
    assert [(e.event, e.request_id) for e in audit.events] == [
        ("decision", request_id),
        ("outcome", request_id),
    ]


def test_refusals_are_neo4j_errors_with_the_request_id(
    client: tuple[TestClient, FakeAudit],
) -> None:
    http, audit = client
    unauthenticated = http.post(QUERY, json={"statement": "RETURN 1"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["WWW-Authenticate"] == 'Bearer realm="cyphergate"'
    assert unauthenticated.json() == {
        "errors": [
            {"code": "Neo.ClientError.Security.Unauthorized", "message": "Authentication failed."}
        ]
    }
    malformed = http.post(
        QUERY,
        content=b"{",
        headers={"Authorization": "Bearer good", "Content-Type": "application/json"},
    )
    assert malformed.status_code == 400
    unspoken = http.post(
        QUERY,
        content=b"RETURN 1",
        headers={"Authorization": "Bearer good", "Content-Type": "text/plain"},
    )
    assert unspoken.status_code == 415
    responses = (unauthenticated, malformed, unspoken)
    ids = [r.headers["X-CypherGate-Request-ID"] for r in responses]
    assert [(e.request_id, e.status) for e in audit.events] == list(
        zip(ids, (401, 400, 415), strict=True)
    )
    assert audit.events[1].principal is not None and audit.events[1].principal["dag"] == "etl"


def test_operations_endpoints(client: tuple[TestClient, FakeAudit]) -> None:
    http, _ = client
    assert http.get("/healthz").json() == {"status": "ok"}
    assert http.get("/readyz").json() == {"status": "ready", "checks": {"neo4j": "ok"}}
    assert http.get("/").json()["neo4j_version"] == "5.26.0"
    assert b"cyphergate_requests_total" in http.get("/metrics").content
