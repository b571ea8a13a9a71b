"""The HTTP door's request spans (installed only when tracing is on, see :mod:`proxy.tracing`).

:class:`TracedRequests` opens one span per Query API request (``/db/...``), continuing the
caller's ``traceparent``/``tracestate`` headers, and ends it once the answer has been sent, with
its status. The routes hand the span to the request path through :func:`request_trace`.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from proxy.tracing import OFF, RequestTrace, Tracing

_TRACE = "cyphergate.trace"


class TracedRequests:
    """ASGI middleware: a span for each request to the Query API's paths."""

    def __init__(self, app: ASGIApp, tracing: Tracing) -> None:
        self._app = app
        self._tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/db/"):
            await self._app(scope, receive, send)
            return
        method = scope["method"]
        trace = self._tracing.request(f"{method} /db", Headers(scope=scope))
        trace.set("http.request.method", method)
        scope.setdefault("state", {})[_TRACE] = trace

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = int(message["status"])
                trace.set("http.response.status_code", status)
                if status >= 500:
                    trace.fail(str(status))
            await send(message)

        with trace:
            try:
                await self._app(scope, receive, sending)
            finally:
                # FastAPI names the route it matched: the span is named by its template.
                route = getattr(scope.get("route"), "path", None)
                if isinstance(route, str):
                    trace.rename(f"{method} {route}")
                    trace.set("http.route", route)


def request_trace(connection: HTTPConnection) -> RequestTrace:
    """The request's span (the shared no-op one when tracing is off)."""
    found = connection.scope.get("state", {}).get(_TRACE)
    return found if found is not None else OFF
