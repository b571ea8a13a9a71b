"""The one place an error becomes a response, in Neo4j's error format."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import JSONResponse

from proxy.api.state import request_id, runtime
from proxy.errors import CypherGateError

REQUEST_ID_HEADER = "X-CypherGate-Request-ID"


def error_response(request: Request, error: CypherGateError) -> JSONResponse:
    """``{"errors": [{"code", "message"}]}`` with the error's status; a 401 offers the schemes
    the gateway accepts, and a refusal that will pass later says when to try again
    (``Retry-After``). The message is the client's; the reason stays in the audit log."""
    headers: dict[str, str] = {}
    known = request_id(request)
    if known:
        headers[REQUEST_ID_HEADER] = known
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 401:
        schemes = runtime(request).auth_schemes or ["Bearer"]
        headers["WWW-Authenticate"] = ", ".join(f'{s} realm="cyphergate"' for s in schemes)
    body = {"errors": [{"code": error.code, "message": error.message}]}
    return JSONResponse(body, status_code=error.status, headers=headers)


async def handle(request: Request, error: Exception) -> JSONResponse:
    """The application's handler of :class:`CypherGateError` (Starlette routes only ours here)."""
    if not isinstance(error, CypherGateError):
        raise error
    return error_response(request, error)
