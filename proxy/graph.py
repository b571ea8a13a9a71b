"""Running statements on Neo4j with the gateway's own credential.

Reads run in READ transactions, everything else in WRITE transactions; each transaction carries
the decision's timeout and metadata that joins Neo4j's own ``SHOW TRANSACTIONS`` to the audit
log. Statements run as auto-commit transactions (``session.run``), on purpose: the driver never
retries them (its managed transactions would, and a write must never run twice), they take one
round trip, and they are the only kind in which ``CALL { ... } IN TRANSACTIONS`` can run.
Neo4j's exceptions are translated into the gateway's errors here, once.
"""

from __future__ import annotations

import base64
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import neo4j
from neo4j import AsyncDriver, AsyncGraphDatabase, Bookmarks
from neo4j import exceptions as neo4j_errors
from neo4j import graph as neo4j_graph
from neo4j import spatial as neo4j_spatial
from neo4j import time as neo4j_time

from proxy.analysis import Analysis, QueryType
from proxy.errors import (
    CypherGateError,
    DatabaseNotFound,
    GraphFailed,
    GraphUnavailable,
    Neo4jClientError,
)
from proxy.policy import AccessMode
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


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows in Query API plain-JSON form, with counters and bookmarks."""

    fields: list[str]
    values: list[list[JSON]]
    counters: dict[str, int | bool] = field(default_factory=dict)
    bookmarks: list[str] = field(default_factory=list)


class GraphExecutor(Protocol):
    """Plans and runs statements on Neo4j.

    Contract: ``run`` runs the statement at most once, in a transaction of the given access
    mode; errors are the gateway's own (4xx for the caller's mistakes, 5xx for Neo4j trouble).
    """

    async def explain(self, database: str, statement: str) -> Analysis: ...

    async def run(self, execution: Execution) -> QueryResult: ...

    async def check_ready(self) -> None: ...


class Neo4jGraph:
    """A :class:`GraphExecutor` on the official async driver."""

    def __init__(self, settings: Neo4jSettings) -> None:
        self._settings = settings
        self._driver: AsyncDriver | None = None

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
        return Analysis(query_type=kind)

    async def run(self, execution: Execution) -> QueryResult:
        """Run the statement once, in an auto-commit transaction; see the module docstring."""
        mode = neo4j.READ_ACCESS if execution.access_mode == "READ" else neo4j.WRITE_ACCESS
        bookmarks = Bookmarks.from_raw_values(execution.bookmarks) if execution.bookmarks else None
        async with (
            _translated_errors(),
            self.driver.session(
                database=execution.database, default_access_mode=mode, bookmarks=bookmarks
            ) as session,
        ):
            query = neo4j.Query(
                execution.statement,
                metadata=dict(execution.metadata),
                timeout=execution.timeout_s,
            )
            result = await session.run(query, dict(execution.parameters))
            fields = list(result.keys())
            values = [
                [to_plain_json(value) for value in record.values()] async for record in result
            ]
            summary = await result.consume()
            last = await session.last_bookmarks()
        counters = {name: getattr(summary.counters, attr) for name, attr in _COUNTERS}
        return QueryResult(
            fields=fields, values=values, counters=counters, bookmarks=list(last.raw_values)
        )

    async def check_ready(self) -> None:
        """Raise unless Neo4j accepts the gateway's credential now."""
        async with _translated_errors():
            await self.driver.verify_connectivity()


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


_FRACTION = re.compile(r"\.(\d+)")


def _java_style_iso(text: str) -> str:
    """Neo4j writes times as Java does: no trailing zeros in the fraction, ``Z`` for UTC."""
    text = _FRACTION.sub(lambda m: "." + m[1].rstrip("0") if m[1].rstrip("0") else "", text, 1)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def to_plain_json(value: Any) -> JSON:
    """A driver value in the Query API's plain JSON form."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    # Points and durations are tuples, so they come before lists.
    if isinstance(value, neo4j_spatial.Point):
        coordinates = " ".join(repr(float(c)) for c in value)
        return f"SRID={value.srid};POINT{' Z' if len(value) == 3 else ''} ({coordinates})"
    if isinstance(value, neo4j_time.Duration | neo4j_time.Date):
        return value.iso_format()
    if isinstance(value, neo4j_time.Time | neo4j_time.DateTime):
        return _java_style_iso(value.iso_format())
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, neo4j_graph.Node):
        return {
            "elementId": value.element_id,
            "labels": sorted(value.labels),
            "properties": to_plain_json(dict(value)),
        }
    if isinstance(value, neo4j_graph.Relationship):
        start, end = value.start_node, value.end_node
        return {
            "elementId": value.element_id,
            # A Node with no properties is falsy (it is a mapping), hence "is not None".
            "startNodeElementId": None if start is None else start.element_id,
            "endNodeElementId": None if end is None else end.element_id,
            "type": value.type,
            "properties": to_plain_json(dict(value)),
        }
    if isinstance(value, neo4j_graph.Path):
        items: list[JSON] = []
        for index, node in enumerate(value.nodes):
            if index:
                items.append(to_plain_json(value.relationships[index - 1]))
            items.append(to_plain_json(node))
        return items
    if isinstance(value, list | tuple):
        return [to_plain_json(item) for item in value]
    if isinstance(value, dict):
        return {key: to_plain_json(item) for key, item in value.items()}
    return str(value)
