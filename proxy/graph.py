"""Running statements on Neo4j with the gateway's own credential.

Reads run in READ transactions, everything else in WRITE transactions; each transaction carries
the decision's timeout and metadata that joins Neo4j's own ``SHOW TRANSACTIONS`` to the audit
log. Statements run as auto-commit transactions (``session.run``), on purpose: the driver never
retries them (its managed transactions would, and a write must never run twice), they take one
round trip, and they are the only kind in which ``CALL { ... } IN TRANSACTIONS`` can run.
One exception: a writing statement under a row limit that must fail when exceeded runs in an
explicit transaction (also never retried), so that it can be rolled back instead of committed.
Neo4j's exceptions are translated into the gateway's errors here, once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import neo4j
from neo4j import AsyncDriver, AsyncGraphDatabase, Bookmarks
from neo4j import exceptions as neo4j_errors

from proxy.analysis import Analysis, QueryType
from proxy.errors import (
    BadRequest,
    CypherGateError,
    DatabaseNotFound,
    GraphFailed,
    GraphUnavailable,
    Neo4jClientError,
    RowLimitExceeded,
)
from proxy.plan import read_plan
from proxy.policy import AccessMode, RowLimitAction
from proxy.settings import Neo4jSettings

JSON = Any

_COUNTERS = (
    ("containsUpdates", "contains_updates"),
    ("nodesCreated", "nodes_created"),
    ("nodesDeleted", "nodes_deleted"),
    ("propertiesSet", "properties_set"),
    ("relationshipsCreated", "relationships_created"),
    ("relationshipsDeleted", "relationships_deleted"),
    ("labelsAdded", "labels_added"),
    ("labelsRemoved", "labels_removed"),
    ("indexesAdded", "indexes_added"),
    ("indexesRemoved", "indexes_removed"),
    ("constraintsAdded", "constraints_added"),
    ("constraintsRemoved", "constraints_removed"),
    ("containsSystemUpdates", "contains_system_updates"),
    ("systemUpdates", "system_updates"),
)


@dataclass(frozen=True, slots=True)
class Execution:
    """One statement to run, with everything the decision constrained."""

    database: str
    statement: str
    parameters: Mapping[str, JSON]
    access_mode: AccessMode
    timeout_s: float
    metadata: Mapping[str, str | int]
    bookmarks: tuple[str, ...] = ()
    # At most this many rows come back; beyond it, fail (and roll back) or truncate.
    row_limit: int | None = None
    row_limit_action: RowLimitAction = "error"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows as driver values (the HTTP layer encodes them), with counters and bookmarks."""

    fields: list[str]
    values: list[list[JSON]]
    counters: dict[str, int | bool] = field(default_factory=dict)
    bookmarks: list[str] = field(default_factory=list)
    # Rows were cut at the decision's row limit (row_limit_action "truncate").
    truncated: bool = False


class GraphExecutor(Protocol):
    """Plans and runs statements on Neo4j.

    Contract: ``run`` runs the statement at most once, in a transaction of the given access
    mode; errors are the gateway's own (4xx for the caller's mistakes, 5xx for Neo4j trouble).
    """

    @property
    def user(self) -> str:
        """The Neo4j user statements run as (for the audit record; never the secret)."""
        ...

    async def explain(self, database: str, statement: str) -> Analysis: ...

    async def run(self, execution: Execution) -> QueryResult: ...

    async def check_ready(self) -> None: ...

    async def describe(self) -> dict[str, str]:
        """Neo4j's ``version`` and ``edition``."""
        ...


class Neo4jGraph:
    """A :class:`GraphExecutor` on the official async driver."""

    def __init__(self, settings: Neo4jSettings) -> None:
        self._settings = settings
        self._driver: AsyncDriver | None = None
        self._description: dict[str, str] | None = None

    async def open(self) -> None:
        """Create the driver with the gateway's credential."""
        self._driver = AsyncGraphDatabase.driver(
            self._settings.uri,
            auth=(self._settings.user, self._settings.read_password()),
            user_agent="cyphergate",
        )

    async def close(self) -> None:
        """Close the driver and its connections."""
        if self._driver is not None:
            await self._driver.close()

    @property
    def user(self) -> str:
        return self._settings.user

    @property
    def driver(self) -> AsyncDriver:
        if self._driver is None:
            raise RuntimeError("Neo4jGraph.open() was not called")
        return self._driver

    async def explain(self, database: str, statement: str) -> Analysis:
        """Plan ``statement`` with EXPLAIN (nothing runs) and return Neo4j's query type."""
        async with (
            _translated_errors(),
            self.driver.session(
                database=database,
                default_access_mode=neo4j.READ_ACCESS,
                notifications_min_severity="OFF",
            ) as session,
        ):
            result = await session.run("EXPLAIN " + statement)
            summary = await result.consume()
        query_type = summary.query_type
        if query_type not in ("r", "rw", "w", "s"):
            raise GraphFailed(reason=f"unexpected_query_type:{query_type}")
        kind: QueryType = query_type
        if not summary.plan:  # nothing to read the facts from: never guess
            raise GraphFailed(reason="explain_without_plan")
        return Analysis(query_type=kind, facts=read_plan(summary.plan, statement=statement))

    async def run(self, execution: Execution) -> QueryResult:
        """Run the statement once, in an auto-commit transaction; see the module docstring."""
        mode = neo4j.READ_ACCESS if execution.access_mode == "READ" else neo4j.WRITE_ACCESS
        bookmarks = Bookmarks.from_raw_values(execution.bookmarks) if execution.bookmarks else None
        rollback_on_limit = (
            execution.row_limit is not None
            and execution.row_limit_action == "error"
            and execution.access_mode == "WRITE"
        )
        async with (
            _translated_errors(),
            self.driver.session(
                database=execution.database, default_access_mode=mode, bookmarks=bookmarks
            ) as session,
        ):
            if rollback_on_limit:
                transaction = await session.begin_transaction(
                    metadata=dict(execution.metadata), timeout=execution.timeout_s
                )
                try:
                    result = await _start(transaction.run, execution.statement, execution)
                    fields, values, truncated = await _rows(result, execution)
                    summary = await result.consume()
                    await transaction.commit()
                finally:
                    if not transaction.closed():
                        await transaction.rollback()
            else:
                query = neo4j.Query(
                    execution.statement,
                    metadata=dict(execution.metadata),
                    timeout=execution.timeout_s,
                )
                result = await _start(session.run, query, execution)
                fields, values, truncated = await _rows(result, execution)
                summary = await result.consume()
            last = await session.last_bookmarks()
        counters = {name: getattr(summary.counters, attr) for name, attr in _COUNTERS}
        return QueryResult(
            fields=fields,
            values=values,
            counters=counters,
            bookmarks=list(last.raw_values),
            truncated=truncated,
        )

    async def describe(self) -> dict[str, str]:
        """Neo4j's version and edition (asked once, from ``dbms.components()``)."""
        if self._description is None:
            async with _translated_errors():
                records, _, _ = await self.driver.execute_query(
                    "CALL dbms.components() YIELD name, versions, edition",
                    database_="system",
                    routing_="r",
                )
            (kernel,) = [r for r in records if r["name"] == "Neo4j Kernel"]
            self._description = {
                "version": str(kernel["versions"][0]),
                "edition": str(kernel["edition"]),
            }
        return self._description

    async def check_ready(self) -> None:
        """Raise unless Neo4j accepts the gateway's credential now."""
        async with _translated_errors():
            await self.driver.verify_connectivity()


async def _start(
    run: Callable[..., Awaitable[neo4j.AsyncResult]], query: Any, execution: Execution
) -> neo4j.AsyncResult:
    try:
        return await run(query, dict(execution.parameters))
    except (OverflowError, ValueError, TypeError) as exc:
        # The driver could not encode a parameter (an integer beyond 64 bits, say).
        raise BadRequest(
            "A parameter cannot be sent to Neo4j (out of range or of no Neo4j type).",
            reason=f"parameter_not_sendable:{type(exc).__name__}",
        ) from exc


async def _rows(
    result: neo4j.AsyncResult, execution: Execution
) -> tuple[list[str], list[list[JSON]], bool]:
    """Field names and rows, stopping one row past the limit: never more is held in memory."""
    fields = list(result.keys())
    values: list[list[JSON]] = []
    limit = execution.row_limit
    async for record in result:
        if limit is not None and len(values) == limit:
            if execution.row_limit_action == "error":
                raise RowLimitExceeded(limit)
            return fields, values, True
        values.append(list(record.values()))
    return fields, values, False


@asynccontextmanager
async def _translated_errors() -> AsyncIterator[None]:
    """Translate the driver's exceptions into the gateway's, once, here."""
    try:
        yield
    except CypherGateError:
        raise
    except neo4j_errors.ClientError as exc:
        code = exc.code or "Neo.ClientError.General.Unknown"
        if code == DatabaseNotFound.code:
            raise DatabaseNotFound() from exc
        if code.startswith("Neo.ClientError.Security."):
            # The gateway's own credential was refused: not the caller's fault, and the
            # message may name internals.
            raise GraphFailed(reason=code) from exc
        raise Neo4jClientError(code, exc.message or code) from exc
    except (neo4j_errors.TransientError, neo4j_errors.ServiceUnavailable) as exc:
        raise GraphUnavailable(reason=type(exc).__name__) from exc
    except (neo4j_errors.SessionExpired, OSError) as exc:
        raise GraphUnavailable(reason=type(exc).__name__) from exc
    except (neo4j_errors.Neo4jError, neo4j_errors.DriverError) as exc:
        raise GraphFailed(reason=type(exc).__name__) from exc
