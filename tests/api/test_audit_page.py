"""The reviewers' page when the identity provider cannot be reached (a clear 503, no trace),
and when the log cannot be read once a reviewer is let in (a page that says so).

Everything else about the page is tested in a real browser against the real provider
(tests/audit/test_review_page.py); these cases need the provider gone or a log no writer
makes. The application is the real one, with fakes for the collaborators its lifespan would
open (a session cookie signed with the configured key stands for a sign-in).
"""

from __future__ import annotations

import dataclasses
import json
from base64 import b64encode
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from itsdangerous import TimestampSigner

from proxy.app import create_app
from proxy.audit.reader import RecordFilter
from proxy.errors import CypherGateError
from proxy.ports import free_ports
from proxy.principal import Identity
from proxy.settings import AuditSettings, AuditWebSettings, Neo4jSettings, Settings
from tests.fakes import FakeAudit, FakeAuditAccess, FakeReading, fake_services


def test_sign_in_with_the_provider_unreachable_is_a_503_page() -> None:
    (port,) = free_ports(1)  # a loopback port nobody listens on
    web = AuditWebSettings(
        issuer=f"http://127.0.0.1:{port}",
        client_id="web",
        client_secret="a-client-secret",
        public_url="http://testserver",
        secure_cookies=False,
    )
    settings = Settings(
        neo4j=Neo4jSettings(password="a-long-password"), audit=AuditSettings(web=web)
    )
    with TestClient(create_app(settings, fake_services())) as client:
        response = client.get("/audit/login", follow_redirects=False)
    assert response.status_code == 503
    assert "Sign-in unavailable" in response.text and "ConnectError" in response.text
    assert "a-client-secret" not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


class _AlteredLog(FakeReading):
    async def query(self, flt: RecordFilter, chain: str | None = None) -> list[dict[str, Any]]:
        raise CypherGateError("The audit log was altered.", reason="audit_log_damaged")


def test_a_log_that_cannot_be_read_is_a_page_that_says_so(tmp_path: Path) -> None:
    """Found by review: once a reviewer was let in, a log that could not be read (edited into
    what no writer makes) was Starlette's bare "Internal Server Error", recorded as internal."""
    key = "k" * 40
    (tmp_path / "session").write_text(key, encoding="utf-8")
    (port,) = free_ports(1)
    issuer = f"http://127.0.0.1:{port}"
    web = AuditWebSettings(
        issuer=issuer,
        client_id="web",
        client_secret="a-client-secret",
        public_url="http://testserver",
        secure_cookies=False,
        session_secret_file=tmp_path / "session",
    )
    settings = Settings(
        neo4j=Neo4jSettings(password="a-long-password"), audit=AuditSettings(web=web)
    )
    reviewer = Identity(method="oidc", issuer=issuer, subject="alice", client_id="web")
    audit = FakeAudit()
    services = dataclasses.replace(
        fake_services(),
        audit=audit,
        audit_access=FakeAuditAccess([reviewer]),
        reading=_AlteredLog(),
    )
    signed_in = {"issuer": issuer, "subject": "alice", "client_id": "web", "expires": 4e9}
    session = {"reviewer": signed_in}
    cookie = TimestampSigner(key).sign(b64encode(json.dumps(session).encode())).decode()
    with TestClient(create_app(settings, services)) as client:
        client.cookies.set("cyphergate_audit", cookie, path="/audit")
        response = client.get("/audit/")
    assert response.status_code == 500
    assert "The audit log was altered." in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
    (access,) = [e for e in audit.events if e.event == "access"]
    assert access.status == 200  # let in: what failed came after
