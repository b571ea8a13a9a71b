"""The gateway's own log lines: plain text, or one JSON object per line, each naming the request
it belongs to.

The request id lives in a context variable, bound where an id is made
(:func:`proxy.gateway.call.new_request_id`, once per HTTP request and per Bolt statement), so
every line logged while serving it (the gateway's, the libraries', uvicorn's access line)
carries the id of its audit records, without passing it to every logger call. Lines name
dependencies and reasons, never a secret or a token (the callers' rule, kept here by logging
nothing of the request itself).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

LogFormat = Literal["text", "json"]

_REQUEST_ID: ContextVar[str | None] = ContextVar("cyphergate_request_id", default=None)


def bind_request_id(request_id: str) -> None:
    """Name the request the current task (and the tasks and threads it starts) serves."""
    _REQUEST_ID.set(request_id)


def current_request_id() -> str | None:
    return _REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Gives every record the request id of the context it was logged in (None outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = _REQUEST_ID.get()
        return True


class AccessLinePath(logging.Filter):
    """uvicorn's access line names the request's path, without its query string: a query can
    hold a credential (the reviewers' page's sign-in returns to ``/audit/callback?code=...``,
    and a caller may put a token in one by mistake), and the gateway reads none from there."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            path = args[2]
            if isinstance(path, str) and "?" in path:
                record.args = (args[0], args[1], path.partition("?")[0], *args[3:])
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC), ``level``, ``logger``, ``message``,
    ``request_id``, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(
    log_format: LogFormat, *, level: int = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log line (the gateway's, uvicorn's) to ``stream`` (standard error) in
    ``log_format``; returns the handler. uvicorn must then be started with ``log_config=None``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.addFilter(AccessLinePath())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
