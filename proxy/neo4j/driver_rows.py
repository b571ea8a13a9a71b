"""A statement's rows as the official driver hands them (:mod:`proxy.neo4j.executor`), under
the decision's row limit, and its summary once they are read."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from neo4j import AsyncResult, AsyncSession

from proxy.errors import RowLimitExceeded
from proxy.neo4j.errors import translated, translated_errors, translated_write
from proxy.neo4j.row_limit import RowBudget
from proxy.neo4j.shown import notifications, shown_plan
from proxy.statement import JSON, Execution, QueryType, Summary

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
_QUERY_TYPES: tuple[QueryType, ...] = ("r", "rw", "w", "s")


class DriverRows:
    """A :class:`~proxy.statement.RowStream` over the driver's result."""

    def __init__(
        self,
        result: AsyncResult,
        execution: Execution,
        finish: Callable[[], Awaitable[list[str]]],
        may_write: bool = False,
    ) -> None:
        self._result = result
        self._may_write = may_write  # an auto-commit write, which commits as it ends
        self._records = aiter(result)
        # Once the result is consumed: commits what must be, and gives the bookmarks.
        self._finish = finish
        self._budget = RowBudget(execution)
        self._fields = list(result.keys())
        self._done = False
        self._summary: Summary | None = None

    @property
    def fields(self) -> list[str]:
        return self._fields

    def __aiter__(self) -> DriverRows:
        return self

    async def __anext__(self) -> list[JSON]:
        if self._done:
            raise StopAsyncIteration
        try:
            record = await anext(self._records)
        except StopAsyncIteration:
            self._done = True
            raise
        except Exception as exc:
            error = translated_write(exc) if self._may_write else translated(exc)
            if error is exc:
                raise
            raise error from exc
        values = list(record.values())
        try:
            admitted = self._budget.admit(values)
        except RowLimitExceeded:
            self._done = True
            raise
        if not admitted:
            self._done = True
            raise StopAsyncIteration
        return values

    async def settle(self) -> bool:
        """As ``RelayRows.settle`` (the driver has no public call for it): the batch read."""
        with contextlib.suppress(Exception):
            while self._result._attached and self._result._streaming:  # its connection yet
                await self._result._connection.fetch_message()
        return self._result._has_more

    async def abandoned(self, session: AsyncSession, bookmarks: tuple[str, ...]) -> None:
        """The block failed, an auto-commit result unread: settled, then its connection closed
        (Neo4j rolls back what it still holds; the session's close would read it all and commit
        it), or, finished (its bookmark came), committed: its summary kept for committed()."""
        await self.settle()
        session.cancel()
        if self._summary is None and (await session.last_bookmarks()).raw_values != set(bookmarks):
            with contextlib.suppress(Exception):
                await self.summary()

    def committed(self) -> Summary | None:
        return self._summary

    async def summary(self) -> Summary:
        if self._summary is None:
            async for _ in self:  # rows nobody read still count towards the limit
                pass
            async with translated_errors(may_write=self._may_write):
                summary = await self._result.consume()
                bookmarks = await self._finish()
            self._summary = Summary(
                rows=self._budget.count,
                counters={name: getattr(summary.counters, attr) for name, attr in _COUNTERS},
                bookmarks=bookmarks,
                truncated=self._budget.truncated,
                query_type=query_type(summary.query_type),
                plan=shown_plan(summary.plan),
                notifications=notifications(summary.metadata),
            )
        return self._summary


def query_type(value: object) -> QueryType | None:
    return next((kind for kind in _QUERY_TYPES if kind == value), None)
