"""The application's typed state, and the little a request keeps of its own.

The lifespan (``proxy/app/``) yields ``{STATE_KEY: Runtime(...)}``; Starlette hands every
request a shallow copy of that mapping as ``scope["state"]``, so a request id stored there is the
request's own. Read them only through the functions here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy.api.held import HeldTransactions
from proxy.clock import Clock
from proxy.gateway.call import new_request_id
from proxy.gateway.path import Gateway
from proxy.gateway.review import AuditReview
from proxy.metrics import Metrics
from proxy.settings import IPNetwork, ServerSettings

STATE_KEY = "cyphergate"
_REQUEST_ID = "cyphergate.request_id"
# A check raises when its dependency is unavailable; it may return "degraded" (serving, but
# with something to catch up on) instead of None.
ReadinessCheck = Callable[[], Awaitable[str | None]]


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
    # The HTTP door's limits: bodies (proxy/api/query.py), connections (api/connections.py).
    server: ServerSettings
    # The Query API's explicit transactions, open between requests.
    transactions: HeldTransactions
    sign_in: SignIn | None = None
    # Named checks for /healthz: a part without which the process must be restarted.
    liveness: Mapping[str, ReadinessCheck] = field(default_factory=dict)
    # Front proxies whose X-Forwarded-For names the client (server.forwarded_allow_ips).
    trusted_proxies: tuple[IPNetwork, ...] = ()


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
    of the request names it (uvicorn's access line too) and every answer can carry it; and a
    Query API path with a trailing slash is read as Neo4j reads it."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})[_REQUEST_ID] = new_request_id()
            _without_trailing_slash(scope)
        await self._app(scope, receive, send)


def _without_trailing_slash(scope: Scope) -> None:
    """Neo4j's server answers ``/db/neo4j/query/v2/`` as ``/db/neo4j/query/v2``, so the
    gateway's Query API paths are read so too: the router would answer a redirect instead (an
    absolute URL built from what the client sent, no body, no record)."""
    path: str = scope["path"]
    if path.startswith("/db/") and path.endswith("/"):
        scope["path"] = path[:-1]
        raw: bytes | None = scope.get("raw_path")
        if raw is not None and raw.endswith(b"/"):
            scope["raw_path"] = raw[:-1]


def request_id(connection: HTTPConnection) -> str | None:
    """The id :func:`start_request` gave this request, if it gave one."""
    found = connection.scope.get("state", {}).get(_REQUEST_ID)
    return found if isinstance(found, str) else None


def client_address(connection: HTTPConnection) -> str | None:
    """The caller as the audit record names it: ``host:port`` of the peer (None if unknown),
    or the address ``X-Forwarded-For`` names when the peer is a trusted front proxy
    (``server.forwarded_allow_ips``).

    The header's entries, its lines joined in order as one list (:func:`combined`), are read
    from the right, the proxies' own end: the first one that is not itself a trusted proxy is
    the client. It is recorded only if it is an IP address; anything else (a name, text,
    nothing) leaves the peer's address on the record.
    """
    client = connection.client
    if client is None:
        return None
    found = connection.scope.get("state", {}).get(STATE_KEY)
    trusted = found.trusted_proxies if isinstance(found, Runtime) else ()
    # Every line of the header, in order: a proxy that adds a line of its own (HAProxy's
    # ``option forwardfor``) instead of extending the caller's leaves the caller's first, and
    # read alone that line would name whoever the caller chose (and spend that address's
    # ``per_client`` quota).
    forwarded = combined(connection.headers).get("x-forwarded-for")
    return forwarded_client(client.host, client.port, forwarded, trusted)


def combined(headers: Headers) -> Headers:
    """The headers as HTTP combines a field sent more than once: its values joined by ", "
    (RFC 9110, 5.3). So an ``Authorization`` or ``X-CypherGate-DAG`` sent twice is refused
    (no credential or DAG id holds a comma), never read as whichever came first, which a
    proxy in front reading the last would not have checked; and ``X-Forwarded-For`` lines are
    one list, the last line's entries (the nearest proxy's) at its right end."""
    raw = headers.raw
    if len({name for name, _ in raw}) == len(raw):
        return headers
    joined: dict[bytes, list[bytes]] = {}
    for name, value in raw:
        joined.setdefault(name, []).append(value)
    return Headers(raw=[(name, b", ".join(values)) for name, values in joined.items()])


def forwarded_client(
    host: str, port: int, forwarded: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """See :func:`client_address`: the client, given the peer, its header and the proxies."""
    peer = f"{host}:{port}"
    if not trusted or forwarded is None or not _within(host, trusted):
        return peer
    entries = [entry.strip() for entry in forwarded.split(",")]
    for entry in reversed(entries):
        if not _within(entry, trusted):
            return entry if _address(entry) is not None else peer
    return entries[0] if _address(entries[0]) is not None else peer


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _within(host: str, networks: Sequence[IPNetwork]) -> bool:
    address = _address(host)
    return address is not None and any(address in network for network in networks)
