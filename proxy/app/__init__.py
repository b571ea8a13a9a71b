"""The composition root: the only place collaborators are built from settings.

:func:`create_app` makes the application; its lifespan opens the real collaborators (or takes
the ``services`` a test passes), assembles the use cases of ``proxy/gateway/`` from them, and
yields them to the front doors as one typed :class:`~proxy.api.state.Runtime`. The command
line's commands that need a collaborator (``policy explain``, ``policy replay``,
``creds rotate-root``) open it here too, with the same code as the server.

Rules: a new collaborator is built here, from its settings section, and handed to its user
through that user's constructor; no wing reads settings to build its own helpers, and nothing
but the command line imports this module. The Neo4j wing is assembled in
:mod:`proxy.app.neo4j`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.integrations.starlette_client import OAuth
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from proxy.analysis import Analyzer, Planner, PlanReader
from proxy.api import audit_routes, errors, operations, query, transactions
from proxy.api.audit_page import audit_page
from proxy.api.held import HeldTransactions
from proxy.api.state import STATE_KEY, ReadinessCheck, RequestIds, Runtime, SignIn
from proxy.api.traced import TracedRequests
from proxy.app.lineage import open_lineage
from proxy.app.neo4j import Neo4jWing, open_neo4j, rotate_root, secret_source
from proxy.app.sinks import open_sinks
from proxy.audit.checkpoint import ParameterDigester, load_private_key
from proxy.audit.reading import AuditLogReading
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.auth import Authenticator, SchemeRouter
from proxy.auth.aws_iam import SCHEME as IAM_SCHEME
from proxy.auth.aws_iam import IAMAuthenticator
from proxy.auth.oidc import OIDCAuthenticator
from proxy.bolt.conversation import Options
from proxy.bolt.server import DoorSettings, bolt_door
from proxy.bolt.transactions import TransactionSlots
from proxy.clock import Clock, system_clock
from proxy.epoch import schema_epoch
from proxy.faults import NO_FAULTS, Faults
from proxy.gateway.admission import Admission
from proxy.gateway.path import Gateway
from proxy.gateway.rates import RateLimits
from proxy.gateway.replay import explain
from proxy.gateway.review import AuditReview
from proxy.gateway.seams import (
    AuditAccessPolicy,
    AuditLog,
    AuditReading,
    CallerAuthenticator,
    CredentialBroker,
    GraphExecutor,
    LineageSink,
    PolicyDecider,
)
from proxy.lineage import namespace_of
from proxy.metrics import Metrics
from proxy.policy import OPAPolicyEngine
from proxy.principal import DagResolver
from proxy.settings import (
    AuditSettings,
    AuditWebSettings,
    OPASettings,
    Settings,
)
from proxy.tracing import Tracing, tracing_from

__all__ = [
    "Neo4jWing",
    "Services",
    "create_app",
    "explain_statement",
    "open_neo4j",
    "open_policy",
    "rotate_root",
    "secret_source",
]


@dataclass(frozen=True, slots=True)
class Services:
    """The opened collaborators of the use cases; tests may pass fakes at these seams."""

    authenticator: CallerAuthenticator
    policy: PolicyDecider
    audit_access: AuditAccessPolicy
    planner: Planner
    credentials: CredentialBroker
    executor: GraphExecutor
    audit: AuditLog
    reading: AuditReading
    readiness: Mapping[str, ReadinessCheck]
    describe: Callable[[], Awaitable[dict[str, str]]]
    auth_schemes: Sequence[str]
    liveness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    # What runs the HTTP door's statements (``executor``) and the Bolt door's (records relayed
    # undecoded); None: ``executor``.
    bolt_executor: GraphExecutor | None = None


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    clock: Clock = system_clock,
    faults: Faults = NO_FAULTS,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build the gateway application; real services are opened by the lifespan.

    ``faults`` is for the crash tests only (see :mod:`proxy.faults`). ``tracing``: the tests'
    (an SDK provider with an in-memory exporter); by default the ``[telemetry]`` section's,
    flushed and closed when the application stops.
    """
    metrics = Metrics()
    owned = tracing is None
    traces = tracing_from(settings.telemetry) if tracing is None else tracing
    web = settings.audit.web
    sign_in = None if web is None else _sign_in(web)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Runtime]]:
        del app
        async with AsyncExitStack() as stack:
            if owned:
                stack.callback(traces.close)  # closed last: the spans of the shutdown too
            chosen = services or await _open_services(settings, clock, stack, metrics, faults)
            lineage = await stack.enter_async_context(
                open_lineage(settings.lineage, settings.neo4j.uri, metrics)
            )
            state = _runtime(settings, chosen, clock, metrics, sign_in, traces, lineage)
            # Closed first: transactions still open roll back while Neo4j is still reachable.
            await stack.enter_async_context(state.transactions.sweeping())
            if (port := settings.server.bolt_port) is not None:
                gateway = state.gateway.with_executor(chosen.bolt_executor or chosen.executor)
                door = bolt_door(gateway, _door_settings(settings, port), chosen.describe)
                await stack.enter_async_context(door)
            yield {STATE_KEY: state}

    app = FastAPI(title="CypherGate", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(query.router)
    app.include_router(transactions.router)
    app.include_router(operations.router)
    if settings.server.metrics:
        app.include_router(operations.metrics_router)
    app.include_router(audit_routes.router)
    if web is not None:
        # Mounted after the API's /audit/records routes, which therefore still match first.
        page = audit_page(
            _session_key(web), max_age_s=web.session_max_age_s, secure_cookies=web.secure_cookies
        )
        app.mount("/audit", page)

        @app.get("/audit", include_in_schema=False)
        async def _audit_page() -> RedirectResponse:
            return RedirectResponse("/audit/", 308)

    errors.install(app)
    if traces.enabled:
        app.add_middleware(TracedRequests, tracing=traces)
    app.add_middleware(RequestIds)
    return app


def _runtime(
    settings: Settings,
    services: Services,
    clock: Clock,
    metrics: Metrics,
    sign_in: SignIn | None,
    tracing: Tracing,
    lineage: LineageSink | None = None,
) -> Runtime:
    """The use cases over ``services``, and what the front doors need beside them."""
    rates = RateLimits(settings.server.rate_limits)  # one count per process, both doors
    gateway = Gateway(
        authenticator=services.authenticator,
        resolver=DagResolver(settings.auth.bindings),
        analyzer=Analyzer(
            PlanReader(services.planner),
            max_entries=settings.neo4j.analysis_cache_size,
            ttl_s=settings.neo4j.analysis_cache_ttl_s,
            metrics=metrics,
            epoch=schema_epoch(settings.server.schema_epoch_file),
        ),
        policy=services.policy,
        credentials=services.credentials,
        executor=services.executor,
        audit=services.audit,
        clock=clock,
        default_timeout_s=settings.neo4j.default_timeout_s,
        digester=ParameterDigester.from_file(settings.audit.hmac_key_file),
        metrics=metrics,
        admission=Admission(settings.server.admission, metrics),
        tracing=tracing,
        rates=rates,
        lineage_namespace=namespace_of(settings.neo4j.uri),
        lineage=lineage,
    )
    signing_key = settings.audit.signing_key_file
    review = AuditReview(
        authenticator=services.authenticator,
        policy=services.audit_access,
        audit=services.audit,
        reading=services.reading,
        clock=clock,
        public_key=None if signing_key is None else load_private_key(signing_key).public_key(),
        rates=rates,
        sealed_within_s=2 * settings.audit.checkpoint_interval_s,
    )
    return Runtime(
        gateway=gateway,
        review=review,
        metrics=metrics,
        clock=clock,
        readiness=services.readiness,
        describe=services.describe,
        auth_schemes=services.auth_schemes,
        server=settings.server,
        transactions=HeldTransactions(
            timeout_s=settings.server.transaction_timeout_s,
            maximum=settings.server.max_transactions,
            per_identity=settings.server.max_transactions_per_identity,
            clock=clock,
        ),
        sign_in=sign_in,
        liveness=services.liveness,
        trusted_proxies=tuple(settings.server.forwarded_allow_ips),
    )


def _door_settings(settings: Settings, port: int) -> DoorSettings:
    server = settings.server
    return DoorSettings(
        host=server.bolt_host or server.host,
        port=port,
        options=Options(
            home_database=settings.neo4j.home_database,
            advertised_address=server.bolt_advertised_address,
            routing_ttl_s=server.bolt_routing_ttl_s,
            idle_timeout_s=server.bolt_idle_timeout_s,
            max_message_bytes=server.bolt_max_message_bytes,
            max_held_result_bytes=server.bolt_max_held_result_bytes,
            transactions=TransactionSlots(
                server.max_transactions_per_identity, total=server.bolt_max_transactions
            ),
            empty_transaction_timeout_s=server.transaction_timeout_s,
        ),
        max_connections=server.bolt_max_connections,
        handshake_timeout_s=server.bolt_handshake_timeout_s,
        message_timeout_s=server.bolt_message_timeout_s,
        tls_certificate=server.bolt_tls_certificate,
        tls_key=server.bolt_tls_key,
        reuse_port=server.workers > 1,
    )


async def _open_services(
    settings: Settings, clock: Clock, stack: AsyncExitStack, metrics: Metrics, faults: Faults
) -> Services:
    http = await stack.enter_async_context(httpx.AsyncClient(timeout=5.0))
    schemes: dict[str, Authenticator] = {}
    if settings.auth.oidc:
        schemes["Bearer"] = OIDCAuthenticator(
            settings.auth.oidc,
            http,
            clock,
            leeway_s=settings.auth.leeway_s,
            max_token_bytes=settings.auth.max_token_bytes,
            verified_cache_size=settings.auth.verified_token_cache_size,
        )
    if settings.auth.aws_iam is not None:
        schemes[IAM_SCHEME] = IAMAuthenticator(settings.auth.aws_iam, http, clock)
    authenticator = SchemeRouter(schemes)
    audit = await stack.enter_async_context(_audit_log(settings.audit, clock, metrics, faults))
    # After the log (they read its file), so closed before it; nothing of the request path waits.
    await stack.enter_async_context(open_sinks(settings.audit, metrics, clock))
    policy = await stack.enter_async_context(open_policy(settings.opa, metrics))
    neo4j = await stack.enter_async_context(open_neo4j(settings, metrics=metrics, faults=faults))
    return Services(
        authenticator=authenticator,
        policy=policy,
        audit_access=policy,
        planner=neo4j.executor,
        credentials=neo4j.credentials,
        executor=neo4j.relay if settings.neo4j.http_relay else neo4j.executor,
        audit=audit,
        reading=AuditLogReading(settings.audit.path, settings.audit.chain_id),
        readiness={
            **neo4j.readiness,
            "opa": policy.check_ready,
            "identity": authenticator.check_ready,
            "audit": audit.check_ready,
        },
        describe=neo4j.executor.describe,
        auth_schemes=authenticator.schemes,
        liveness={"audit_writer": audit.check_alive},
        bolt_executor=neo4j.relay if settings.neo4j.bolt_relay else neo4j.executor,
    )


def _audit_log(
    settings: AuditSettings, clock: Clock, metrics: Metrics, faults: Faults
) -> SQLiteAuditLog:
    key = settings.signing_key_file
    return SQLiteAuditLog(
        settings.path,
        max_batch=settings.max_batch,
        signing_key=None if key is None else load_private_key(key),
        chain_id=settings.chain_id,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        append_timeout_s=settings.append_timeout_s,
        late_capacity=settings.late_capacity,
        clock=clock,
        metrics=metrics,
        faults=faults,
    )


@asynccontextmanager
async def open_policy(
    settings: OPASettings, metrics: Metrics | None = None, *, cache: bool = True
) -> AsyncIterator[OPAPolicyEngine]:
    """An engine asking the OPA at ``settings.url``, over an HTTP client of its own, for the
    block. Without ``cache`` every decision comes from OPA itself (``policy replay``)."""
    if not cache:
        settings = settings.model_copy(update={"decision_cache_size": 0})
    async with httpx.AsyncClient(
        base_url=settings.url.rstrip("/"), timeout=settings.timeout_s
    ) as http:
        yield OPAPolicyEngine(settings, http, metrics)


async def explain_statement(
    settings: Settings, *, dag: str, database: str, statement: str, parameter_names: list[str]
) -> dict[str, Any]:
    """``policy explain``: the analysis, input document and decision for one statement, with
    the gateway's Neo4j credential and OPA, and no cache of either."""
    async with (
        open_neo4j(settings, manage=False) as neo4j,
        open_policy(settings.opa, cache=False) as policy,
    ):
        analyzer = Analyzer(PlanReader(neo4j.executor), max_entries=0)
        return await explain(
            analyzer,
            policy,
            dag=dag,
            database=database,
            statement=statement,
            parameter_names=parameter_names,
        )


def _sign_in(settings: AuditWebSettings) -> SignIn:
    """The reviewers' page's OIDC client (authorization code with PKCE)."""
    oauth = OAuth()
    oauth.register(
        "reviewers",
        client_id=settings.client_id,
        client_secret=settings.read_client_secret(),
        server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid profile", "code_challenge_method": "S256"},
    )
    return SignIn(
        provider=oauth.create_client("reviewers"),
        client_id=settings.client_id,
        redirect_uri=settings.redirect_uri,
        session_max_age_s=settings.session_max_age_s,
    )


def _session_key(settings: AuditWebSettings) -> str:
    if settings.session_secret_file is None:
        return secrets.token_urlsafe(32)
    key = settings.session_secret_file.read_text(encoding="utf-8").strip()
    if len(key) < 32:
        raise ValueError("audit.web.session_secret_file must hold 32 or more characters")
    return key
