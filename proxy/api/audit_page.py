"""The reviewers' page at ``/audit``: server-rendered HTML, no script, no build step.

People sign in at the configured OIDC issuer with the authorization code flow and PKCE (authlib's
Starlette client; it checks state, nonce and the ID token's signature, issuer, audience and
expiry). The session cookie, signed by Starlette's SessionMiddleware, holds only who signed in
and until when; it is never a grant. Every page that reads the log asks the audit-access policy
again and leaves one ``access`` record, so removing a reviewer from the policy takes effect on
their next click. The routes are this module's; :func:`audit_page` puts them behind the session
middleware as an application to mount at ``/audit``, and ``proxy/app/`` registers the sign-in
client (:class:`~proxy.api.state.SignIn`) from ``audit.web``.
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
from authlib.integrations.starlette_client import OAuthError
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.middleware.sessions import SessionMiddleware

from proxy.api.audit_routes import record_number
from proxy.api.state import SignIn, client_address, runtime, start_request
from proxy.audit.reader import BadFilter, RecordFilter, utc_bound
from proxy.audit.record import EVENT_KINDS, flat_record, visible
from proxy.errors import AuditChainNotFound, BadRequest, CypherGateError, PolicyDenied, StaleForm
from proxy.principal import Identity

HERE = Path(__file__).parent


def _shown(value: Any) -> Any:
    """What a template prints, with its control and format characters as escapes
    (:func:`~proxy.audit.record.visible`): records hold what callers sent, and a bidirectional
    override in a statement must not make the page show another. Line breaks and tabs stay for
    the statement's layout. The escapes are ASCII letters, digits and backslashes, so text
    already escaped for HTML stays so."""
    if isinstance(value, Markup):  # escaped already (join's output): escapes add no markup
        return Markup(visible(value, keep=" \n\t"))  # noqa: S704
    return visible(value, keep=" \n\t") if isinstance(value, str) else value


# finalize: every value a template prints goes through _shown, whatever field it is.
TEMPLATES = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(),
        finalize=_shown,
    )
)
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
_CHOICES = {"decision": ("allow", "deny"), "event": EVENT_KINDS}
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


router = APIRouter()


def audit_page(session_key: str, *, max_age_s: int, secure_cookies: bool) -> FastAPI:
    """The page as an application to mount at ``/audit``: this module's routes behind a signed
    session cookie (``session_key``: 32 or more characters), and its stylesheet."""
    page = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    page.add_middleware(
        SessionMiddleware,
        secret_key=session_key,
        session_cookie="cyphergate_audit",
        max_age=max_age_s,
        path="/audit",
        same_site="lax",
        https_only=secure_cookies,
    )
    page.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    page.include_router(router)
    # What fails after the reviewer is let in (a log that cannot be read) is a page too.
    page.add_exception_handler(CypherGateError, _failed)
    return page


async def _failed(request: Request, error: Exception) -> Response:
    if not isinstance(error, CypherGateError):
        raise error
    return _refused(request, error)


@router.get("/")
async def index(request: Request) -> Response:
    """Records, newest first, with the filters of ``audit query``; the chain; denials by DAG."""
    state = runtime(request)
    review = state.review
    chosen = {name: request.query_params.get(name, "").strip() for name in _FILTERS}
    problems = [
        f"{name} must be one of {', '.join(choices)}"
        for name, choices in _CHOICES.items()
        if chosen[name] and chosen[name] not in choices
    ]
    before_seq: int | None = None
    if request.query_params.get("before"):
        try:
            before_seq = record_number(request.query_params["before"], "before")
        except BadFilter as exc:
            problems.append(str(exc))
    for name in ("since", "until"):
        if chosen[name]:
            try:
                utc_bound(chosen[name], name)
            except BadFilter as exc:
                problems.append(str(exc))
    # One chain per worker of the replica (server.workers); the first unless one is chosen.
    chain = request.query_params.get("chain", "").strip() or None
    who = await _signed_in(request, _refusal(problems), chain)
    if isinstance(who, Response):
        return who
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
        before_seq=before_seq,
        newest_first=True,
        limit=PAGE_SIZE,
    )
    page_of = await review.records(flt, chain)
    # Named in links only when there is a choice: one chain keeps the page's addresses.
    chain = page_of["chain"] if len(page_of["chains"]) > 1 else None
    records = [flat_record(r) for r in page_of["records"]]
    older = None
    if page_of["next_after"] is not None:
        named = _nonempty({**chosen, "chain": chain or ""})
        older = "?" + urlencode({**named, "before": records[-1]["seq"]})
    now = datetime.fromtimestamp(state.clock(), UTC)
    hours = [
        (now - timedelta(hours=n)).strftime("%Y-%m-%dT%H") for n in range(CHART_HOURS - 1, -1, -1)
    ]
    denials = await review.denials_by_dag(hours[0], chain)
    return _render(
        request,
        "index.html",
        filters=chosen,
        records=records,
        older=older,
        chain_id=chain,
        chains=page_of["chains"],
        chain=await review.status(chain),
        chart=_chart(denials, hours),
        hours=hours,
    )


@router.get("/record/{seq}")
async def record(request: Request, seq: str) -> Response:
    """One record with the other records of its request."""
    chain = request.query_params.get("chain", "").strip() or None
    try:
        number, problems = record_number(seq, "seq"), []
    except BadFilter as exc:
        number, problems = 0, [str(exc)]
    who = await _signed_in(request, _refusal(problems), chain)
    if isinstance(who, Response):
        return who
    found = await runtime(request).review.record(number, chain)
    if found is None:
        return _render(request, "message.html", 404, title=f"No record {seq}")
    return _render(
        request,
        "record.html",
        record=flat_record(found["record"]),
        record_json=json.dumps(found["record"], indent=2, sort_keys=True),
        related=[flat_record(r) for r in found["related"]],
        sealed=found["sealed"],
        chain_id=chain,
    )


@router.get("/verify")
async def verify_form(request: Request) -> Response:
    """Verifying is work done on the reviewer's behalf: only a POST from the page starts it."""
    del request
    return RedirectResponse("/audit/", 303)


@router.post("/verify")
async def verify(request: Request) -> Response:
    """Verify the whole chain now (the form carries the session's anti-forgery token)."""
    chosen = (await request.form()).get("chain")
    chain = chosen.strip() or None if isinstance(chosen, str) else None
    refusal = None if await _token_matches(request) else StaleForm(_STALE)
    who = await _signed_in(request, refusal, chain)
    if isinstance(who, Response):
        return who
    review = runtime(request).review
    started = time.perf_counter()
    verified, problem = await review.verify(chain)
    return _render(
        request,
        "verify.html",
        verified=verified,
        problem=problem,
        seconds=time.perf_counter() - started,
        chain_id=chain,
        chain=await review.status(chain),
    )


@router.get("/login")
async def login(request: Request) -> Response:
    """Send the person to the issuer to sign in (authorization code with PKCE)."""
    target = request.query_params.get("next", "/audit/")
    # Only back into this page: an open redirect would let a link send reviewers anywhere.
    request.session["next"] = target if _is_page_path(target) else "/audit/"
    sign_in = _sign_in(request)
    try:
        redirect: Response = await sign_in.provider.authorize_redirect(
            request, sign_in.redirect_uri
        )
        return redirect
    except _PROVIDER_UNREACHABLE as error:
        return _unreachable(request, error)


@router.get("/callback")
async def callback(request: Request) -> Response:
    """The issuer's answer: a verified ID token names the person, whom the policy must name."""
    sign_in = _sign_in(request)
    try:
        token = await sign_in.provider.authorize_access_token(request)
    except OAuthError as error:
        return _render(request, "message.html", 400, title="Sign-in failed", detail=error.error)
    except _PROVIDER_UNREACHABLE as error:
        return _unreachable(request, error)
    claims = token.get("userinfo") or {}
    if not claims.get("sub") or not claims.get("iss"):
        # authlib verified an ID token only if it got one; without one, nobody signed in.
        return _render(request, "message.html", 400, title="Sign-in failed", detail="no ID token")
    identity = Identity(
        method="oidc", issuer=claims["iss"], subject=claims["sub"], client_id=sign_in.client_id
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
        "expires": int(runtime(request).clock()) + sign_in.session_max_age_s,
    }
    return RedirectResponse(request.session.pop("next", "/audit/"), 303)


@router.post("/logout")
async def logout(request: Request) -> Response:
    """End the session (the form carries the session's anti-forgery token)."""
    if not await _token_matches(request):
        return _render(request, "message.html", 403, title="Stale form", detail=_STALE)
    request.session.clear()
    return _render(request, "message.html", title="Signed out")


def _sign_in(request: Request) -> SignIn:
    sign_in = runtime(request).sign_in
    if sign_in is None:  # the page is mounted only with audit.web configured
        raise RuntimeError("the reviewers' page has no sign-in configured")
    return sign_in


def _refusal(problems: list[str]) -> CypherGateError | None:
    """What refuses a request a reviewer got wrong (unreadable filters): raised, and recorded
    with its status, once the person may read the log."""
    return BadRequest("; ".join(problems), reason="bad_filter") if problems else None


async def _signed_in(
    request: Request, refusal: CypherGateError | None = None, chain: str | None = None
) -> Identity | Response:
    """The signed-in reviewer, or the response to send instead (sign-in page, refusal); the
    reviewer's ``refusal``, or a ``chain`` the replica does not keep, is recorded and its page
    sent."""
    signed_in = request.session.get(_SESSION_KEY)
    if not signed_in or signed_in.get("expires", 0) <= runtime(request).clock():
        request.session.pop(_SESSION_KEY, None)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse("/audit/login?" + urlencode({"next": target}), 303)
    identity = Identity(
        method="oidc",
        issuer=signed_in["issuer"],
        subject=signed_in["subject"],
        client_id=signed_in["client_id"],
    )
    return await _authorize(request, identity, refusal, chain)


async def _authorize(
    request: Request,
    identity: Identity,
    refusal: CypherGateError | None = None,
    chain: str | None = None,
) -> Identity | Response:
    """``identity``, if the policy lets it read the log (recorded either way); else the page
    that says why not. ``chain`` is looked up only then, in the recorded step: the log is read
    for nobody else, and a failure to read it is recorded too."""

    async def prove() -> Identity:
        return identity

    review = runtime(request).review

    async def known_chain() -> None:
        if chain is not None and chain not in await review.chains():
            raise AuditChainNotFound(chain)

    try:
        return await review.authorize(
            prove,
            start_request(request),
            client_address(request),
            refusal=refusal,
            lookup=known_chain,
        )
    except CypherGateError as error:
        return _refused(request, error)


def _render(request: Request, name: str, code: int = 200, **context: Any) -> Response:
    signed_in = request.session.get(_SESSION_KEY)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {"signed_in": signed_in, "csrf": request.session.get("csrf", ""), **context},
        status_code=code,
    )
    response.headers.update(_SECURITY_HEADERS)
    return response


def _unreachable(request: Request, error: Exception) -> Response:
    detail = f"The identity provider could not be reached ({type(error).__name__})."
    return _render(request, "message.html", 503, title="Sign-in unavailable", detail=detail)


def _refused(request: Request, error: CypherGateError) -> Response:
    if isinstance(error, PolicyDenied):
        return _render(request, "message.html", 403, title="Not a reviewer", reasons=error.reasons)
    if isinstance(error, BadRequest):
        return _render(request, "message.html", 400, title="Bad filter", problems=[error.message])
    if isinstance(error, AuditChainNotFound):
        return _render(request, "message.html", 404, title="No such chain")
    if isinstance(error, StaleForm):
        return _render(request, "message.html", 403, title="Stale form", detail=_STALE)
    return _render(request, "message.html", error.status, title="Unavailable", error=error)


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
