"""What a front door hands the request path: one call, and the statement it carries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from proxy.ids import time_ordered_uuid
from proxy.logs import bind_request_id
from proxy.statement import AccessMode
from proxy.tracing import OFF, RequestTrace

# Neo4j's Query API answers a successful statement with 202 Accepted; the audit record of a
# statement that ran says so too, whichever front door it came through.
SUCCESS_STATUS = 202


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement as the caller sent it."""

    text: str
    parameters: Mapping[str, Any]
    # The access mode the caller asked for (the policy input's request.access_mode).
    access_mode: AccessMode | None = None
    bookmarks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Call:
    """One call on the request path, as a front door translates it.

    ``headers`` are the request's context headers (``X-CypherGate-DAG``, ``-Task``, ``-Run``,
    ``-Try``, lower-case names). ``statement`` gives the statement: the request path asks for it
    only once the caller is identified, so a front door may read and parse its body then (and
    refuse it with a :class:`~proxy.errors.CypherGateError`, recorded like any refusal).
    ``trace`` is the span of the request the call belongs to (:mod:`proxy.tracing`; the shared
    no-op one when tracing is off): the request path adds its steps and verdict to it.
    """

    request_id: str
    database: str
    authorization: str | None
    client: str | None
    headers: Mapping[str, str]
    statement: Callable[[], Awaitable[Statement]]
    trace: RequestTrace = OFF


def new_request_id() -> str:
    """A fresh request id, bound to the current context: log lines from here on name it."""
    request_id = time_ordered_uuid()
    bind_request_id(request_id)
    return request_id
