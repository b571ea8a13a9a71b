"""The application's typed state, and the little a request keeps of its own.

The lifespan (``proxy/app.py``) yields ``{STATE_KEY: Runtime(...)}``; Starlette hands every
request a shallow copy of that mapping as ``scope["state"]``, so a request id stored there is the
request's own. Read them only through the functions here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.api.held import HeldTransactions
from proxy.clock import Clock
from proxy.gateway.call import new_request_id
from proxy.gateway.path import Gateway
from proxy.gateway.review import AuditReview
from proxy.metrics import Metrics

STATE_KEY = "cyphergate"
_REQUEST_ID = "cyphergate.request_id"
ReadinessCheck = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SignIn:
    """How people sign in to the reviewers' page: authlib's Starlette client registered for the
    configured issuer, and what the page needs of its settings."""

    provider: Any  # authlib's StarletteOAuth2App (authlib ships no type hints)
    client_id: str
    redirect_uri: str
    session_max_age_s: int


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything the front doors need, made once per application by its lifespan."""

    gateway: Gateway
    review: AuditReview
    metrics: Metrics
    clock: Clock
    # Named checks for /readyz; each raises when its dependency is unavailable.
    readiness: Mapping[str, ReadinessCheck]
    # Neo4j's version and edition, for the Query API's discovery document.
    describe: Callable[[], Awaitable[dict[str, str]]]
    # The schemes offered in WWW-Authenticate.
    auth_schemes: Sequence[str]
    max_body_bytes: int
    # The Query API's explicit transactions, open between requests.
    transactions: HeldTransactions
    sign_in: SignIn | None = None


def runtime(connection: HTTPConnection) -> Runtime:
    """The application's :class:`Runtime`."""
    found = connection.scope.get("state", {}).get(STATE_KEY)
    if not isinstance(found, Runtime):
        raise RuntimeError("the application's lifespan has not run")
    return found


def start_request(connection: HTTPConnection) -> str:
    """The request's id (given by :class:`RequestIds` as it arrived, or now), kept for the
    error handler's ``X-CypherGate-Request-ID`` and bound to the log lines that follow."""
    found = request_id(connection)
    if found is not None:
        return found
    made = new_request_id()
    connection.scope.setdefault("state", {})[_REQUEST_ID] = made
    return made


class RequestIds:
    """ASGI middleware: every HTTP request has its id before anything runs, so every log line
    of the request names it (uvicorn's access line too) and every answer can carry it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[_REQUEST_ID] = new_request_id()
        await self._app(scope, receive, send)


def request_id(connection: HTTPConnection) -> str | None:
    """The id :func:`start_request` gave this request, if it gave one."""
    found = connection.scope.get("state", {}).get(_REQUEST_ID)
    return found if isinstance(found, str) else None


def client_address(connection: HTTPConnection) -> str | None:
    """``host:port`` of the caller as the audit record names it (None if unknown)."""
    client = connection.client
    return f"{client.host}:{client.port}" if client else None
