"""The reviewers' page at /audit, in Debian's headless Chromium driven by Playwright.

People sign in at the devstack's real OIDC provider (authorization code with PKCE); the real OPA
decides who is a reviewer; every page view is itself on the record.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, sync_playwright

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.devstack.stack import DevStack

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium tries to reach Google's hosts, which this
# machine refuses; a test must never send traffic beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context per test: no cookie carries over."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


@pytest.fixture(scope="module")
def audit_page(status: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = status["audit_page"]
    return info


def sign_in(page: Page, audit_page: dict[str, Any], login: str, start: str = "") -> None:
    page.goto(audit_page["url"] + start)
    # Not signed in: the page sends the browser to the identity provider's login form.
    assert "/interaction/" in page.url, page.url
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", audit_page["people"][login]["password"])
    page.click("button[type=submit]")
    page.wait_for_load_state()


def accesses_by(audit_path: Path, subject: str) -> list[dict[str, Any]]:
    with AuditReader(audit_path) as reader:
        return list(reader.query(RecordFilter(event="access", subject=subject)))


def test_reviewer_signs_in_filters_denials_and_opens_a_record(
    stack: DevStack, gateway: httpx.Client, page: Page, audit_page: dict[str, Any], tmp_path: Path
) -> None:
    denied = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "MATCH (n) RETURN count(n) AS page_test_marker"},
        headers={"Authorization": stack.auth_header("demo_unlisted")},
    )
    assert denied.status_code == 403
    allowed = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": "RETURN 'page test' AS allowed"},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert allowed.status_code == 202
    before = len(accesses_by(stack.audit_path, "demo_reviewer"))

    sign_in(page, audit_page, "demo_reviewer")
    assert page.url == audit_page["url"]
    assert page.inner_text("h1") == "Audit log"
    assert "Signed in as Demo Reviewer" in page.inner_text("header")
    # The denial just made shows in the chart of denials per DAG.
    assert "demo_unlisted" in page.inner_text("section.chart")

    page.select_option("select[name=decision]", "deny")
    page.click("form.filters button[type=submit]")
    page.wait_for_load_state()
    assert "decision=deny" in page.url
    decisions = page.locator("table.records tbody td:nth-child(6)").all_inner_texts()
    assert decisions and set(decisions) == {"deny"}
    row = page.locator("table.records tbody tr", has_text="page_test_marker").first
    seq = row.locator("td").first.inner_text()

    row.locator("a").first.click()
    page.wait_for_load_state()
    assert page.url.endswith(f"/audit/record/{seq}")
    assert page.inner_text("h1") == f"Record #{seq}"
    details = page.inner_text("dl.record")
    assert "demo_unlisted" in details and "page_test_marker" in details
    assert "deny: dag_not_granted" in details

    shot = tmp_path / "record.png"
    page.screenshot(path=str(shot), full_page=True)
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    assert image.width == 1280 and image.height >= 900
    # A rendered page, not a blank or error screen: many colours, the header's dark bar at
    # the top, and the red of a denial somewhere on the page.
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 50
    assert image.getpixel((5, 5)) == (0x1D, 0x23, 0x30)
    assert any(colour == (0xB3, 0x26, 0x1E) for _, colour in colours)

    # Each page view (index, filtered index, record) is one access record of the reviewer, plus
    # the sign-in itself.
    views = accesses_by(stack.audit_path, "demo_reviewer")[before:]
    assert len(views) == 4
    assert all(v["status"] == 200 and v["decision"]["allow"] is True for v in views)


def test_a_person_the_policy_does_not_name_is_refused(
    stack: DevStack, page: Page, audit_page: dict[str, Any]
) -> None:
    before = len(accesses_by(stack.audit_path, "demo_visitor"))
    sign_in(page, audit_page, "demo_visitor")
    assert page.inner_text("h1") == "Not a reviewer"
    assert "not_a_reviewer" in page.inner_text("main")
    assert "table" not in page.content()
    refusals = accesses_by(stack.audit_path, "demo_visitor")[before:]
    assert [(r["status"], r["decision"]["reasons"]) for r in refusals] == [
        (403, ["not_a_reviewer"])
    ]
    # No session was kept: the next visit goes through the identity provider again (which
    # remembers the person, so no form this time) and is refused and recorded again.
    page.goto(audit_page["url"])
    assert "/audit/callback?" in page.url
    assert page.inner_text("h1") == "Not a reviewer"
    assert len(accesses_by(stack.audit_path, "demo_visitor")) == before + 2


def test_a_wrong_password_stays_at_the_provider(page: Page, audit_page: dict[str, Any]) -> None:
    page.goto(audit_page["url"])
    page.fill("input[name=login]", "demo_reviewer")
    page.fill("input[name=password]", "not-the-password")
    page.click("button[type=submit]")
    page.wait_for_load_state()
    assert "/interaction/" in page.url
    assert "wrong password" in page.inner_text("[role=alert]")


def test_sign_in_returns_only_to_the_page_itself_and_forms_need_its_token(
    page: Page, audit_page: dict[str, Any], status: dict[str, Any]
) -> None:
    sign_in(page, audit_page, "demo_reviewer", start="login?next=//elsewhere.invalid/audit/")
    assert page.url == audit_page["url"]
    page.click("text=Verify the whole chain now")
    page.wait_for_load_state()
    assert page.url == status["gateway_url"] + "/audit/verify"
    assert "PASSED" in page.inner_text("main")
    # The same POST without the page's token (a link on another site, say) does nothing.
    forged = page.request.post(status["gateway_url"] + "/audit/verify", form={"csrf": "x"})
    assert forged.status == 403 and "Stale form" in forged.text()
    assert page.request.get(status["gateway_url"] + "/audit/verify").url == audit_page["url"]


def test_page_without_a_session(status: dict[str, Any]) -> None:
    with httpx.Client(base_url=status["gateway_url"]) as client:
        first = client.get("/audit/record/1")
        assert first.status_code == 303
        assert first.headers["location"] == "/audit/login?next=%2Faudit%2Frecord%2F1"
        login = client.get(first.headers["location"])
        assert login.status_code == 302
        authorize = httpx.URL(login.headers["location"])
        assert str(authorize).startswith(status["oidc"]["issuer"])
        params = authorize.params
        assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
        assert params["response_type"] == "code" and "openid" in params["scope"].split()
        cookie = login.headers["set-cookie"]
        assert "httponly" in cookie.lower() and "path=/audit" in cookie.lower()
        assert "samesite=lax" in cookie.lower()

        # A forged or replayed callback: the state is not the one this browser was given.
        forged = client.get("/audit/callback", params={"code": "x", "state": "forged"})
        assert forged.status_code == 400
        assert "Sign-in failed" in forged.text and "forged" not in forged.text

    with httpx.Client(base_url=status["gateway_url"]) as client:
        client.cookies.set("cyphergate_audit", "eyJyZXZpZXdlciI6IHt9fQ==.forged.sig")
        tampered = client.get("/audit/")
        assert tampered.status_code == 303
        assert tampered.headers["location"].startswith("/audit/login")


def test_page_sends_security_headers(page: Page, audit_page: dict[str, Any]) -> None:
    sign_in(page, audit_page, "demo_reviewer")
    response = page.goto(audit_page["url"])
    assert response is not None and response.status == 200
    headers = response.all_headers()
    assert "script-src" not in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


def test_unreadable_filters_are_a_400_page_naming_them(
    page: Page, audit_page: dict[str, Any]
) -> None:
    sign_in(page, audit_page, "demo_reviewer")
    answer = page.goto(audit_page["url"] + "?since=2026-11-30T04:30:00%2B01:00&until=notadate")
    assert answer is not None and answer.status == 400
    shown = page.inner_text("body")
    assert "until: expected an ISO 8601 time" in shown
    assert "since:" not in shown  # the readable one passes
    for path in ("?before=%C2%B2", "?before=99999999999999999999999", "record/%D9%A3"):
        answer = page.goto(audit_page["url"] + path)
        assert answer is not None and answer.status == 400, path
        assert "expected a whole number" in page.inner_text("body")


def test_format_characters_a_caller_sent_show_as_escapes(
    stack: DevStack, gateway: httpx.Client, page: Page, audit_page: dict[str, Any]
) -> None:
    """Found by review: a statement's bidirectional override (U+202E) or isolate (U+2066) was
    shown raw, so the page could show a statement as another (``DELETE`` read as ``ETELED``)."""
    marker = "bidi_" + uuid.uuid4().hex[:8]
    statement = f"RETURN '{marker}' AS x // \u202eDELETE\u2066 (n)"
    sent = gateway.post(
        "/db/neo4j/query/v2",
        json={"statement": statement},
        headers={"Authorization": stack.auth_header("demo_reader")},
    )
    assert sent.status_code == 202, sent.text
    sign_in(page, audit_page, "demo_reviewer")
    page.goto(audit_page["url"] + "?" + urlencode({"text": marker}))
    row = page.locator("table.records tbody tr", has_text=marker).first
    assert "\\u202eDELETE\\u2066 (n)" in row.inner_text()
    row.locator("a").first.click()
    page.wait_for_load_state()
    assert "// \\u202eDELETE\\u2066 (n)" in page.inner_text("dl.record")
    for shown in (page.content(), page.inner_text("body")):
        assert "\u202e" not in shown and "\u2066" not in shown


def test_a_refused_page_view_is_recorded_with_the_status_it_answers(
    stack: DevStack, page: Page, audit_page: dict[str, Any], status: dict[str, Any]
) -> None:
    """Found by review: the page wrote its access record (status 200) before it read the
    filters, the record number, the chain or the form's anti-forgery token; a 400, 404 or 403
    page was on the record as a read that succeeded."""
    sign_in(page, audit_page, "demo_reviewer")
    for path, code, reason in (
        ("?until=notadate", 400, "bad_filter"),
        ("record/%D9%A3", 400, "bad_filter"),
        ("?chain=nope", 404, "no_chain:nope"),
        ("record/1?chain=nope", 404, "no_chain:nope"),
    ):
        answer = page.goto(audit_page["url"] + path)
        assert answer is not None and answer.status == code, path
        last = accesses_by(stack.audit_path, "demo_reviewer")[-1]
        assert (last["status"], last["error"]["reason"]) == (code, reason), path
    forged = page.request.post(status["gateway_url"] + "/audit/verify", form={"csrf": "x"})
    assert forged.status == 403 and "Stale form" in forged.text()
    last = accesses_by(stack.audit_path, "demo_reviewer")[-1]
    assert (last["status"], last["error"]["reason"]) == (403, "stale_form")
