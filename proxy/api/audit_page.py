"""The reviewers' page at ``/audit``: server-rendered HTML, no script, no build step.

People sign in at the configured OIDC issuer with the authorization code flow and PKCE (authlib's
Starlette client; it checks state, nonce and the ID token's signature, issuer, audience and
expiry). The session cookie, signed by Starlette's SessionMiddleware, holds only who signed in
and until when; it is never a grant. Every page that reads the log asks the audit-access policy
again and leaves one ``access`` record, so removing a reviewer from the policy takes effect on
their next click.
"""

from __future__ import annotations

import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx2
from authlib.integrations.starlette_client import OAuth, OAuthError
from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.middleware.sessions import SessionMiddleware

from proxy.api.routes import client_address
from proxy.audit.reader import RecordFilter
from proxy.audit.record import flat_record
from proxy.audit.review import AuditReview
from proxy.clock import Clock
from proxy.errors import CypherGateError, PolicyDenied
from proxy.gateway import new_request_id
from proxy.principal import Identity
from proxy.settings import AuditWebSettings

HERE = Path(__file__).parent
PAGE_SIZE = 50
CHART_HOURS = 24
# authlib's client talks to the provider through httpx2, whose errors are not OSErrors.
_PROVIDER_UNREACHABLE = (httpx2.HTTPError, OSError)
_SESSION_KEY = "reviewer"
_STALE = "The form did not come from this signed-in page; reload the page and try again."
_FILTERS = (
    "dag",
    "decision",
    "event",
    "database",
    "principal",
    "reason",
    "label",
    "text",
    "since",
    "until",
)
_CHOICES = {"decision": ("allow", "deny"), "event": ("decision", "outcome", "access")}
# No script at all; styles only from our own stylesheet; never framed.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def build_audit_page(settings: AuditWebSettings, app: FastAPI, clock: Clock) -> FastAPI:
    """The page as an application to mount at ``/audit``; it reads ``app.state.review``."""
    page = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    page.add_middleware(
        SessionMiddleware,
        secret_key=_session_key(settings),
        session_cookie="cyphergate_audit",
        max_age=settings.session_max_age_s,
        path="/audit",
        same_site="lax",
        https_only=settings.secure_cookies,
    )
    page.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    oauth = OAuth()
    oauth.register(
        "reviewers",
        client_id=settings.client_id,
        client_secret=settings.read_client_secret(),
        server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"},
    )
    provider = oauth.create_client("reviewers")

    def render(request: Request, name: str, code: int = 200, **context: Any) -> Response:
        signed_in = request.session.get(_SESSION_KEY)
        response = templates.TemplateResponse(
            request,
            name,
            {"signed_in": signed_in, "csrf": request.session.get("csrf", ""), **context},
            status_code=code,
        )
        response.headers.update(_SECURITY_HEADERS)
        return response

    def unreachable(request: Request, error: Exception) -> Response:
        detail = f"The identity provider could not be reached ({type(error).__name__})."
        return render(request, "message.html", 503, title="Sign-in unavailable", detail=detail)

    def refused(request: Request, error: CypherGateError) -> Response:
        if isinstance(error, PolicyDenied):
            return render(
                request, "message.html", 403, title="Not a reviewer", reasons=error.reasons
            )
        return render(request, "message.html", error.status, title="Unavailable", error=error)

    async def authorized(request: Request) -> Identity | Response:
        """The signed-in reviewer, or the response to send instead (sign-in page, refusal)."""
        signed_in = request.session.get(_SESSION_KEY)
        if not signed_in or signed_in.get("expires", 0) <= clock():
            request.session.pop(_SESSION_KEY, None)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/audit/login?" + urlencode({"next": target}), 303)
        identity = Identity(
            method="oidc",
            issuer=signed_in["issuer"],
            subject=signed_in["subject"],
            client_id=signed_in["client_id"],
        )
        return await _authorize(request, identity)

    async def _authorize(request: Request, identity: Identity) -> Identity | Response:
        review: AuditReview = app.state.review
        client = client_address(request)

        async def prove() -> Identity:
            return identity

        try:
            return await review.authorize(prove, new_request_id(), client)
        except CypherGateError as error:
            return refused(request, error)

    @page.get("/")
    async def index(request: Request) -> Response:
        who = await authorized(request)
        if isinstance(who, Response):
            return who
        review: AuditReview = app.state.review
        chosen = {name: request.query_params.get(name, "").strip() for name in _FILTERS}
        problems = [
            f"{name} must be one of {', '.join(choices)}"
            for name, choices in _CHOICES.items()
            if chosen[name] and chosen[name] not in choices
        ]
        before = request.query_params.get("before")
        if before is not None and not (before.isdigit() and int(before) > 0):
            problems.append("before must be a record number")
        if problems:
            return render(request, "message.html", 400, title="Bad filter", problems=problems)
        flt = RecordFilter(
            dag=chosen["dag"] or None,
            verdict=chosen["decision"] or None,
            event=chosen["event"] or None,
            database=chosen["database"] or None,
            subject=chosen["principal"] or None,
            reason=chosen["reason"] or None,
            text=chosen["text"] or None,
            label=chosen["label"] or None,
            since=chosen["since"] or None,
            until=chosen["until"] or None,
            before_seq=int(before) if before else None,
            newest_first=True,
            limit=PAGE_SIZE,
        )
        page_of = await review.records(flt)
        records = [flat_record(r) for r in page_of["records"]]
        older = None
        if page_of["next_after"] is not None:
            older = "?" + urlencode({**_nonempty(chosen), "before": records[-1]["seq"]})
        now = datetime.fromtimestamp(clock(), UTC)
        hours = [
            (now - timedelta(hours=n)).strftime("%Y-%m-%dT%H")
            for n in range(CHART_HOURS - 1, -1, -1)
        ]
        denials = await review.denials_by_dag(hours[0])
        return render(
            request,
            "index.html",
            filters=chosen,
            records=records,
            older=older,
            chain=await review.status(),
            chart=_chart(denials, hours),
            hours=hours,
        )

    @page.get("/record/{seq}")
    async def record(request: Request, seq: int) -> Response:
        who = await authorized(request)
        if isinstance(who, Response):
            return who
        review: AuditReview = app.state.review
        found = await review.record(seq)
        if found is None:
            return render(request, "message.html", 404, title=f"No record {seq}")
        return render(
            request,
            "record.html",
            record=flat_record(found["record"]),
            record_json=json.dumps(found["record"], indent=2, sort_keys=True),
            related=[flat_record(r) for r in found["related"]],
            sealed=found["sealed"],
        )

    @page.get("/verify")
    async def verify_form(request: Request) -> Response:
        # Verifying is work done on the reviewer's behalf: only a POST from the page starts it.
        del request
        return RedirectResponse("/audit/", 303)

    @page.post("/verify")
    async def verify(request: Request) -> Response:
        who = await authorized(request)
        if isinstance(who, Response):
            return who
        if not await _token_matches(request):
            return render(request, "message.html", 403, title="Stale form", detail=_STALE)
        review: AuditReview = app.state.review
        started = time.perf_counter()
        verified, problem = await review.verify()
        return render(
            request,
            "verify.html",
            verified=verified,
            problem=problem,
            seconds=time.perf_counter() - started,
            chain=await review.status(),
        )

    @page.get("/login")
    async def login(request: Request) -> Response:
        target = request.query_params.get("next", "/audit/")
        # Only back into this page: an open redirect would let a link send reviewers anywhere.
        request.session["next"] = target if _is_page_path(target) else "/audit/"
        try:
            redirect: Response = await provider.authorize_redirect(request, settings.redirect_uri)
            return redirect
        except _PROVIDER_UNREACHABLE as error:
            return unreachable(request, error)

    @page.get("/callback")
    async def callback(request: Request) -> Response:
        try:
            token = await provider.authorize_access_token(request)
        except OAuthError as error:
            return render(request, "message.html", 400, title="Sign-in failed", detail=error.error)
        except _PROVIDER_UNREACHABLE as error:
            return unreachable(request, error)
        claims = token.get("userinfo") or {}
        if not claims.get("sub") or not claims.get("iss"):
            # authlib verified an ID token only if it got one; without one, nobody signed in.
            return render(
                request, "message.html", 400, title="Sign-in failed", detail="no ID token"
            )
        identity = Identity(
            method="oidc", issuer=claims["iss"], subject=claims["sub"], client_id=settings.client_id
        )
        who = await _authorize(request, identity)
        if isinstance(who, Response):
            return who
        request.session["csrf"] = secrets.token_urlsafe(24)
        request.session[_SESSION_KEY] = {
            "issuer": identity.issuer,
            "subject": identity.subject,
            "client_id": identity.client_id,
            "name": claims.get("name") or identity.subject,
            "expires": int(clock()) + settings.session_max_age_s,
        }
        return RedirectResponse(request.session.pop("next", "/audit/"), 303)

    @page.post("/logout")
    async def logout(request: Request) -> Response:
        if not await _token_matches(request):
            return render(request, "message.html", 403, title="Stale form", detail=_STALE)
        request.session.clear()
        return render(request, "message.html", title="Signed out")

    return page


async def _token_matches(request: Request) -> bool:
    """The form carries this session's anti-forgery token (set at sign-in)."""
    expected = request.session.get("csrf")
    form = await request.form()
    given = form.get("csrf")
    return (
        isinstance(expected, str)
        and isinstance(given, str)
        and hmac.compare_digest(expected.encode(), given.encode())
    )


def _session_key(settings: AuditWebSettings) -> str:
    if settings.session_secret_file is None:
        return secrets.token_urlsafe(32)
    key = settings.session_secret_file.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ValueError("audit.web.session_secret_file must hold 32 or more characters")
    return key


def _is_page_path(target: str) -> bool:
    return target.startswith("/audit/") and not target.startswith("//") and "\\" not in target


def _nonempty(values: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


def _chart(denials: dict[str | None, dict[str, int]], hours: list[str]) -> list[dict[str, Any]]:
    """Per DAG: total refusals and one bar per hour, heights scaled to the busiest hour."""
    busiest = max((n for per_hour in denials.values() for n in per_hour.values()), default=0)
    rows = []
    for dag, per_hour in sorted(denials.items(), key=lambda item: (item[0] is None, item[0])):
        counts = [per_hour.get(hour, 0) for hour in hours]
        rows.append(
            {
                "dag": dag,
                "total": sum(counts),
                "bars": [
                    {"hour": hour, "count": n, "height": round(30 * n / busiest) if busiest else 0}
                    for hour, n in zip(hours, counts, strict=True)
                ],
            }
        )
    return rows
