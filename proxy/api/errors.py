"""The one place an error becomes a response, in Neo4j's error format, with the request id.

Whatever the cause: the gateway's own errors, Starlette's (no such route, method not allowed),
and anything unexpected (a 500 naming nothing; the log has the traceback).
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from proxy.api.state import request_id, runtime, start_request
from proxy.errors import BadRequest, CypherGateError
from proxy.wire import REQUEST_ID_HEADER as REQUEST_ID_HEADER


def error_response(request: Request, error: CypherGateError) -> JSONResponse:
    """``{"errors": [{"code", "message"}]}`` with the error's status; a 401 offers the schemes
    the gateway accepts, and a refusal that will pass later says when to try again
    (``Retry-After``). The message is the client's; the reason stays in the audit log."""
    headers: dict[str, str] = {REQUEST_ID_HEADER: request_id(request) or start_request(request)}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(error.retry_after_s)
    if error.status == 401:
        schemes = runtime(request).auth_schemes or ["Bearer"]
        headers["WWW-Authenticate"] = ", ".join(f'{s} realm="cyphergate"' for s in schemes)
    body = {"errors": [{"code": error.code, "message": error.message}]}
    return JSONResponse(body, status_code=error.status, headers=headers)


def install(app: FastAPI) -> None:
    """Make these the application's handlers."""
    app.add_exception_handler(CypherGateError, handle)
    app.add_exception_handler(HTTPException, handle_http)
    app.add_exception_handler(Exception, handle_unexpected)


async def handle(request: Request, error: Exception) -> JSONResponse:
    """The application's handler of :class:`CypherGateError` (Starlette routes only ours here)."""
    if not isinstance(error, CypherGateError):
        raise error
    return error_response(request, error)


async def handle_http(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own refusals (404 no such route, 405 method not allowed), as Neo4j's."""
    if not isinstance(error, HTTPException):
        raise error
    ours = BadRequest(str(error.detail), reason=f"http_{error.status_code}")
    ours.status = error.status_code
    response = error_response(request, ours)
    response.headers.update(error.headers or {})
    return response


async def handle_unexpected(request: Request, error: Exception) -> JSONResponse:
    """Anything no other handler took: a 500 that names nothing (Starlette logs the traceback
    after this answer is sent)."""
    del error
    return error_response(request, CypherGateError(reason="internal"))
