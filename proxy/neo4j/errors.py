"""The driver's exceptions, translated into the gateway's once, here.

A refused login of the gateway's own credential is :class:`~proxy.errors.GraphFailed` with
Neo4j's code as its reason (:data:`UNAUTHORIZED`, :data:`RATE_LIMITED`), never the caller's
fault and never Neo4j's words; a statement Neo4j refuses is
:class:`~proxy.errors.Neo4jClientError` with Neo4j's own code and message, which describe the
caller's own statement.
"""

from __future__ import annotations

import re
from types import TracebackType

from neo4j import exceptions as neo4j_errors

from proxy.errors import (
    CommitOutcomeUnknown,
    CypherGateError,
    DatabaseNotFound,
    GraphFailed,
    GraphUnavailable,
    Neo4jClientError,
    WriteOutcomeUnknown,
)

UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
RATE_LIMITED = "Neo.ClientError.Security.AuthenticationRateLimit"


def translated(exc: Exception) -> Exception:
    """The gateway's error for ``exc`` (ours, and anything not the driver's, pass unchanged)."""
    if isinstance(exc, CypherGateError):
        return exc
    if isinstance(exc, neo4j_errors.ClientError):
        code = exc.code or "Neo.ClientError.General.Unknown"
        return _client_error(code, exc.message or code)
    if isinstance(exc, neo4j_errors.IncompleteCommit):  # before ServiceUnavailable, its base
        return CommitOutcomeUnknown()
    if isinstance(exc, neo4j_errors.ConnectionAcquisitionTimeoutError):
        return GraphUnavailable(reason="neo4j_acquisition_timeout")
    if isinstance(
        exc,
        neo4j_errors.TransientError
        | neo4j_errors.ServiceUnavailable
        | neo4j_errors.SessionExpired
        | OSError,
    ):
        return GraphUnavailable(reason=type(exc).__name__)
    if isinstance(exc, neo4j_errors.Neo4jError | neo4j_errors.DriverError):
        return GraphFailed(reason=type(exc).__name__)
    return exc


def translated_write(exc: Exception) -> Exception:
    """:func:`translated`, for an auto-commit statement that may write: the driver's connection
    found lost once the statement was sent (raised where the driver declares a connection
    defunct, not where it fails to open one) may have committed it, so never transient."""
    if isinstance(exc, neo4j_errors.ServiceUnavailable | neo4j_errors.SessionExpired):
        trace = exc.__traceback__
        while trace is not None and trace.tb_next is not None:
            trace = trace.tb_next
        if trace is not None and trace.tb_frame.f_code.co_name == "_set_defunct":
            return WriteOutcomeUnknown()
    return translated(exc)


# Transient codes the driver reports as the caller's errors: retrying would not help.
_RECLASSIFIED = {
    "Neo.TransientError.Transaction.Terminated": "Neo.ClientError.Transaction.Terminated",
    "Neo.TransientError.Transaction.LockClientStopped": (
        "Neo.ClientError.Transaction.LockClientStopped"
    ),
}


def from_code(code: str, message: str) -> CypherGateError:
    """The gateway's error for a Neo4j ``FAILURE`` of ``code`` (a connection of our own, not
    the driver's: :mod:`proxy.neo4j.bolt`), the same one :func:`translated` gives for the
    driver's exception of that code."""
    code = _RECLASSIFIED.get(code, code)
    classification = code.split(".")[1] if code.count(".") >= 3 else ""
    if classification == "ClientError":
        return _client_error(code, message)
    if classification == "TransientError":
        return GraphUnavailable(reason="TransientError")
    return GraphFailed(reason="DatabaseError")


def _client_error(code: str, message: str) -> CypherGateError:
    if code == DatabaseNotFound.code:
        return DatabaseNotFound(database=_missing_database(message))
    if code.startswith("Neo.ClientError.Security."):
        # The gateway's own credential was refused: not the caller's fault, and the message may
        # name internals.
        return GraphFailed(reason=code)
    return Neo4jClientError(code, message)


# Where Neo4j's message places an error in the statement; the statement's line quoted after it,
# with a caret under the column.
_POSITION = re.compile(r"\(line (\d+), column (\d+) \(offset: (\d+)\)\)")


def without_prefix(message: str, prefix: str) -> str:
    """Neo4j's ``message`` about ``prefix + statement`` (the gateway plans ``EXPLAIN`` and the
    statement) as Neo4j words it about the statement the caller sent: positions counted from
    its start, its first line quoted without the prefix, the caret moved back under it. An
    error placed in the prefix itself (an empty, blank or comment-only statement: Neo4j's
    parser ends there) is placed at the statement's start: the caller never sent the prefix."""
    shift = len(prefix)

    def position(match: re.Match[str]) -> str:
        line, column, offset = (int(number) for number in match.groups())
        if offset < shift:
            return "(line 1, column 1 (offset: 0))"
        column -= shift if line == 1 else 0
        return f"(line {line}, column {column} (offset: {offset - shift}))"

    lines = _POSITION.sub(position, message).split("\n")
    alone = '"' + prefix.rstrip() + '"'  # an empty statement: Neo4j quotes "EXPLAIN" alone
    for index, text in enumerate(lines):
        if text.startswith('"' + prefix) or text == alone:
            lines[index] = '""' if text == alone else '"' + text[1 + shift :]
            caret = lines[index + 1] if index + 1 < len(lines) else ""
            if caret.startswith(" " * shift) and caret.strip() == "^":
                # Never under the opening quote: there, it pointed into the prefix.
                lines[index + 1] = caret[shift:] if caret[shift:] != "^" else " ^"
            break
    return "\n".join(lines)


# Neo4j 5 names the database it did not find in one of these (a USE in a subquery: the second).
_MISSING_DATABASE = re.compile(r"Graph not found: (.+)|Database (.+) not found")


def _missing_database(message: str) -> str | None:
    found = _MISSING_DATABASE.fullmatch(message.strip())
    return None if found is None else (found.group(1) or found.group(2))


class translated_errors:  # named like the @contextmanager functions it stands beside
    """Translate the driver's exceptions raised in a ``with`` or ``async with`` block (see
    :func:`translated`; :func:`translated_write` with ``may_write``)."""

    def __init__(self, *, may_write: bool = False) -> None:
        self._translated = translated_write if may_write else translated

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if isinstance(exc, Exception):
            error = self._translated(exc)
            if error is not exc:
                raise error from exc

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.__exit__(kind, exc, trace)
