"""The application factory and its lifespan: where real collaborators are built and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse

from proxy.analysis import Analyzer
from proxy.api.audit_page import build_audit_page
from proxy.api.audit_routes import build_audit_router
from proxy.api.routes import build_router, error_response
from proxy.audit import AuditLog
from proxy.audit.checkpoint import ParameterDigester, load_private_key
from proxy.audit.review import AuditReview
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.auth import Authenticator, SchemeRouter
from proxy.auth.aws_iam import SCHEME as IAM_SCHEME
from proxy.auth.aws_iam import IAMAuthenticator
from proxy.auth.oidc import OIDCAuthenticator
from proxy.clock import Clock, system_clock
from proxy.errors import CypherGateError
from proxy.faults import NO_FAULTS, Faults
from proxy.gateway import Gateway
from proxy.graph import GraphExecutor, Neo4jGraph
from proxy.metrics import Metrics
from proxy.policy import OPAPolicyEngine, PolicyEngine
from proxy.principal import DagResolver
from proxy.settings import Settings


@dataclass(frozen=True, slots=True)
class Services:
    """The collaborators of the request path; tests may pass fakes at these seams."""

    authenticator: SchemeRouter
    policy: PolicyEngine
    graph: GraphExecutor
    audit: AuditLog


def create_app(
    settings: Settings,
    services: Services | None = None,
    *,
    clock: Clock = system_clock,
    faults: Faults = NO_FAULTS,
) -> FastAPI:
    """Build the gateway application; real services are opened by the lifespan.

    ``faults`` is for the crash tests only (see :mod:`proxy.faults`).
    """
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            chosen = services or await _open_services(settings, clock, stack, metrics, faults)
            gateway = Gateway(
                authenticator=chosen.authenticator,
                resolver=DagResolver(settings.auth.bindings),
                analyzer=Analyzer(
                    chosen.graph,
                    max_entries=settings.neo4j.analysis_cache_size,
                    ttl_s=settings.neo4j.analysis_cache_ttl_s,
                    metrics=metrics,
                ),
                policy=chosen.policy,
                graph=chosen.graph,
                audit=chosen.audit,
                clock=clock,
                default_timeout_s=settings.neo4j.default_timeout_s,
                digester=ParameterDigester.from_file(settings.audit.hmac_key_file),
                metrics=metrics,
            )
            readiness = {
                "neo4j": chosen.graph.check_ready,
                "opa": chosen.policy.check_ready,
                "identity": chosen.authenticator.check_ready,
                "audit": chosen.audit.check_ready,
            }
            app.state.gateway = gateway
            app.state.review = AuditReview(
                authenticator=chosen.authenticator,
                policy=chosen.policy,
                audit=chosen.audit,
                path=settings.audit.path,
                clock=clock,
                public_key=(
                    load_private_key(settings.audit.signing_key_file).public_key()
                    if settings.audit.signing_key_file
                    else None
                ),
            )
            app.state.readiness = readiness
            app.state.describe = chosen.graph.describe
            app.state.auth_schemes = chosen.authenticator.schemes
            yield

    app = FastAPI(title="CypherGate", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.metrics = metrics
    app.include_router(
        build_router(max_body_bytes=settings.server.max_body_bytes, metrics=settings.server.metrics)
    )
    app.include_router(build_audit_router())
    if settings.audit.web is not None:
        # Mounted after the API's /audit/records routes, which therefore still match first.
        app.mount("/audit", build_audit_page(settings.audit.web, app, clock))

        @app.get("/audit", include_in_schema=False)
        async def _audit_page() -> RedirectResponse:
            return RedirectResponse("/audit/", 308)

    @app.exception_handler(CypherGateError)
    async def _handle(request: Request, error: Exception) -> JSONResponse:
        if not isinstance(error, CypherGateError):  # Starlette only routes ours here
            raise error
        return error_response(request, error)

    return app


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
        )
    if settings.auth.aws_iam is not None:
        schemes[IAM_SCHEME] = IAMAuthenticator(settings.auth.aws_iam, http, clock)
    authenticator = SchemeRouter(schemes)
    audit_settings = settings.audit
    audit = SQLiteAuditLog(
        audit_settings.path,
        max_batch=audit_settings.max_batch,
        signing_key=(
            load_private_key(audit_settings.signing_key_file)
            if audit_settings.signing_key_file
            else None
        ),
        chain_id=audit_settings.chain_id,
        checkpoint_every=audit_settings.checkpoint_every,
        checkpoint_interval_s=audit_settings.checkpoint_interval_s,
        clock=clock,
    )
    await audit.open()
    stack.push_async_callback(audit.close)
    policy = OPAPolicyEngine(settings.opa, metrics)
    await policy.open()
    stack.push_async_callback(policy.close)
    graph = Neo4jGraph(
        settings.neo4j,
        development=settings.profile == "development",
        faults=faults,
        metrics=metrics,
    )
    await graph.open()
    stack.push_async_callback(graph.close)
    return Services(authenticator=authenticator, policy=policy, graph=graph, audit=audit)
