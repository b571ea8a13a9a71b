"""The reviewers' page when the identity provider cannot be reached: a clear 503, no trace.

Everything else about the page is tested in a real browser against the real provider
(tests/audit/test_review_page.py); this is the one case that needs the provider gone.
"""

from __future__ import annotations

import time

from fastapi import FastAPI
from fastapi.testclient import TestClient

from proxy.api.audit_page import build_audit_page
from proxy.devstack.ports import free_ports
from proxy.settings import AuditWebSettings


def test_sign_in_with_the_provider_unreachable_is_a_503_page() -> None:
    (port,) = free_ports(1)  # a loopback port nobody listens on
    settings = AuditWebSettings(
        issuer=f"http://127.0.0.1:{port}",
        client_id="web",
        client_secret="a-client-secret",
        public_url="http://testserver",
        secure_cookies=False,
    )
    page = build_audit_page(settings, FastAPI(), time.time)
    with TestClient(page) as client:  # the page alone, as it is mounted at /audit
        response = client.get("/login", follow_redirects=False)
    assert response.status_code == 503
    assert "Sign-in unavailable" in response.text and "ConnectError" in response.text
    assert "a-client-secret" not in response.text
    assert response.headers["content-security-policy"].startswith("default-src 'none'")
