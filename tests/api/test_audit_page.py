"""The reviewers' page when the identity provider cannot be reached: a clear 503, no trace.

Everything else about the page is tested in a real browser against the real provider
(tests/audit/test_review_page.py); this is the one case that needs the provider gone. The
application is the real one, with fakes for the collaborators its lifespan would open.
"""

from __future__ import annotations

from fastapi.testclient import TestClient

from proxy.app import create_app
from proxy.ports import free_ports
from proxy.settings import AuditSettings, AuditWebSettings, Neo4jSettings, Settings
from tests.fakes import fake_services


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
