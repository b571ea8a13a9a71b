"""Planning and running statements on Neo4j with the credential the executor is handed.

Reads run in READ transactions, everything else in WRITE transactions; each transaction carries
the decision's timeout and metadata that joins Neo4j's own ``SHOW TRANSACTIONS`` to the audit
log. Statements run as auto-commit transactions (``session.run``), on purpose: the driver never
retries them (its managed transactions would, and a write must never run twice), they take one
round trip, and they are the only kind in which ``CALL { ... } IN TRANSACTIONS`` can run.
One exception: a writing statement under a row limit that must fail when exceeded runs in an
explicit transaction (also never retried), so that it can be rolled back instead of committed,
unless it commits in batches of its own (``Execution.rolled_back_past_limit``).

:meth:`Neo4jExecutor.begin` opens an explicit transaction a caller holds open across statements
(:class:`Neo4jTransaction`): its session and connection are its own until it commits or rolls
back, and its statements carry no metadata or timeout of their own (the transaction's apply).

Rows stream: :meth:`Neo4jExecutor.run` hands back the statement's rows as Neo4j produces them,
never more than one past the row limit, and the session stays open until the block ends. Who
the statement runs as is the caller's :class:`~proxy.neo4j.logins.Login` (on the login's own
driver if it has one, so that pooled connections keep their user); planning runs as the
gateway's own login, given at construction.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import neo4j
from neo4j import (
    AsyncDriver,
    AsyncGraphDatabase,
    AsyncResult,
    AsyncSession,
    AsyncTransaction,
    Bookmarks,
)
from neo4j.auth_management import AsyncAuthManager

from proxy.errors import (
    BadRequest,
    GraphFailed,
    GraphUnavailable,
    Neo4jClientError,
    PlanTimedOut,
)
from proxy.neo4j.driver_rows import DriverRows, query_type
from proxy.neo4j.errors import translated_errors, without_prefix
from proxy.neo4j.logins import Login
from proxy.neo4j.sockets import refuse_writes_to_closed_transports
from proxy.statement import (
    COMPARING_CONSTRAINTS,
    AccessMode,
    Constraint,
    Execution,
    Opening,
    Plan,
    RowStream,
)

# What the gateway puts before a statement to have Neo4j plan it without running it.
_EXPLAIN = "EXPLAIN "
# The reasons of a connection found lost (proxy.neo4j.errors.translated).
_LOST = frozenset({"ServiceUnavailable", "SessionExpired"})


def connect(
    uri: str,
    auth: AsyncAuthManager | neo4j.Auth,
    *,
    max_connection_lifetime_s: float,
    connection_timeout_s: float = 5.0,
    acquisition_timeout_s: float = 10.0,
) -> AsyncDriver:
    """The official async driver for ``uri``, logging in with ``auth`` (the gateway's own
    credential, or a leased user's) unless a session names another. A new connection must be
    open (TCP and Bolt handshake) within ``connection_timeout_s``, and a statement waits at most
    ``acquisition_timeout_s`` for one, so a paused Neo4j costs a request that long, not the
    pause (the driver's defaults are 30 and 60 s). A pooled connection Neo4j ended is found
    lost as on plain asyncio (:mod:`proxy.neo4j.sockets`)."""
    refuse_writes_to_closed_transports()
    with translated_errors():
        return AsyncGraphDatabase.driver(
            uri,
            auth=auth,
            user_agent="cyphergate",
            max_connection_lifetime=max_connection_lifetime_s,
            connection_timeout=connection_timeout_s,
            connection_acquisition_timeout=acquisition_timeout_s,
        )


class Neo4jExecutor:
    """Plans and runs statements on the official async driver."""

    def __init__(self, driver: AsyncDriver, *, own: Login, plan_timeout_s: float = 10.0) -> None:
        self._driver = driver
        self._own = own
        self._plan_timeout_s = plan_timeout_s
        self._description: dict[str, str] | None = None

    async def plan(self, database: str, statement: str) -> Plan:
        """Plan ``statement`` with EXPLAIN (nothing runs), as the gateway's own user, within
        the plan timeout (:class:`~proxy.errors.PlanTimedOut`). The driver kills a connection
        whose session is cancelled mid-answer: the one that waited is never pooled again."""
        try:
            async with asyncio.timeout(self._plan_timeout_s) as deadline:
                try:
                    return await self._own.attempt(lambda: self._explain(database, statement))
                except GraphUnavailable as error:
                    if error.reason not in _LOST:
                        raise
                    # A pooled connection Neo4j had ended: EXPLAIN runs nothing, so once more,
                    # on another (the lost one is never pooled again).
                    return await self._own.attempt(lambda: self._explain(database, statement))
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise PlanTimedOut(self._plan_timeout_s) from exc

    async def _explain(self, database: str, statement: str) -> Plan:
        try:
            async with (
                translated_errors(),
                self._driver.session(
                    database=database,
                    default_access_mode=neo4j.READ_ACCESS,
                    notifications_min_severity="OFF",
                ) as session,
            ):
                result = await session.run(_EXPLAIN + statement)
                summary = await result.consume()
        except Neo4jClientError as error:  # about the caller's statement, as Neo4j words it
            raise Neo4jClientError(error.code, without_prefix(error.message, _EXPLAIN)) from error
        kind = query_type(summary.query_type)
        if kind is None:
            raise GraphFailed(reason=f"unexpected_query_type:{summary.query_type}")
        if not summary.plan:  # nothing to read the facts from: never guess
            raise GraphFailed(reason="explain_without_plan")
        return Plan(query_type=kind, operators=summary.plan)

    async def constraints(self, database: str) -> tuple[Constraint, ...]:
        """The constraints on ``database`` that compare an entity with others
        (:mod:`proxy.plan.constraints`), as the gateway's own user."""
        return await self._own.attempt(lambda: self._constraints(database))

    async def _constraints(self, database: str) -> tuple[Constraint, ...]:
        async with (
            translated_errors(),
            self._driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as s,
        ):
            result = await s.run(
                "SHOW CONSTRAINTS YIELD type, entityType, labelsOrTypes, properties"
                " WHERE type IN $kinds RETURN entityType, labelsOrTypes, properties",
                kinds=list(COMPARING_CONSTRAINTS),
            )
            rows = await result.values()
        return tuple(
            Constraint(entity, name, frozenset(properties or ()))
            for entity, names, properties in rows
            if entity in ("NODE", "RELATIONSHIP")
            for name in names or ()
        )

    async def procedure_modes(self, database: str) -> dict[str, str]:
        """The mode of each procedure Neo4j offers on ``database``, as the gateway's own user."""
        return await self._own.attempt(lambda: self._procedure_modes(database))

    async def _procedure_modes(self, database: str) -> dict[str, str]:
        async with (
            translated_errors(),
            self._driver.session(database=database, default_access_mode=neo4j.READ_ACCESS) as s,
        ):
            result = await s.run("SHOW PROCEDURES YIELD name, mode RETURN name, mode")
            rows = await result.values()
        return {str(name): str(mode) for name, mode in rows}

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution, login: Login) -> AsyncIterator[RowStream]:
        """Start the statement once, as ``login``; its rows stream inside the block."""
        async with contextlib.AsyncExitStack() as held:

            async def start() -> DriverRows:
                return await held.enter_async_context(self._started(execution, login))

            yield await login.attempt(start)

    @contextlib.asynccontextmanager
    async def _started(self, execution: Execution, login: Login) -> AsyncIterator[DriverRows]:
        """A session with the statement started in it; see the module docstring. Errors of the
        caller's block pass through untranslated."""
        rollback_on_limit = execution.rolled_back_past_limit
        may_write = not rollback_on_limit and execution.access_mode == "WRITE"
        session = self._session(
            execution.database, execution.access_mode, execution.bookmarks, login
        )
        transaction: AsyncTransaction | None = None
        try:
            async with translated_errors(may_write=may_write):
                if rollback_on_limit:
                    transaction = await session.begin_transaction(
                        metadata=dict(execution.metadata), timeout=execution.timeout_s
                    )
                    result = await _start(transaction.run, execution.statement, execution)
                else:
                    query = neo4j.Query(
                        execution.statement,
                        metadata=dict(execution.metadata),
                        timeout=execution.timeout_s,
                    )
                    result = await _start(session.run, query, execution)

            async def finish() -> list[str]:
                if transaction is not None:
                    await transaction.commit()
                return list((await session.last_bookmarks()).raw_values)

            rows = DriverRows(result, execution, finish, may_write=may_write)
            try:
                yield rows
            except BaseException:
                if transaction is None:
                    await rows.abandoned(session, execution.bookmarks)
                raise
        finally:
            async with translated_errors():
                try:
                    if transaction is not None and not transaction.closed():
                        await transaction.rollback()  # not committed: the limit was exceeded
                finally:
                    await session.close()

    async def begin(self, opening: Opening, login: Login) -> Neo4jTransaction:
        """Begin an explicit transaction as ``login`` (Neo4j answers the BEGIN, so a refused
        login is tried again here like a statement's); it holds its session until it ends."""

        async def start() -> Neo4jTransaction:
            session = self._session(opening.database, opening.access_mode, opening.bookmarks, login)
            try:
                async with translated_errors():
                    transaction = await session.begin_transaction(
                        metadata=dict(opening.metadata), timeout=opening.timeout_s
                    )
            except (OverflowError, ValueError, TypeError) as exc:
                await _closed(session)
                raise BadRequest(
                    "The transaction's metadata cannot be sent to Neo4j.",
                    reason=f"metadata_not_sendable:{type(exc).__name__}",
                ) from exc
            except BaseException:
                await _closed(session)
                raise
            return Neo4jTransaction(session, transaction)

        return await login.attempt(start)

    def _session(
        self,
        database: str,
        access_mode: AccessMode,
        bookmarks: tuple[str, ...],
        login: Login,
    ) -> AsyncSession:
        # The login's own driver when it has one: a connection of a pool shared by several
        # users is logged off and on again (a password check in Neo4j) whenever its user changes.
        driver = self._driver if login.driver is None else login.driver
        with translated_errors():
            return driver.session(
                database=database,
                default_access_mode=(
                    neo4j.READ_ACCESS if access_mode == "READ" else neo4j.WRITE_ACCESS
                ),
                bookmarks=Bookmarks.from_raw_values(bookmarks) if bookmarks else None,
                auth=login.auth,
                # Neo4j's own default: its warnings and information reach the caller.
            )

    async def describe(self) -> dict[str, str]:
        """Neo4j's version and edition (asked once, from ``dbms.components()``)."""
        if self._description is None:
            async with translated_errors():
                records, _, _ = await self._driver.execute_query(
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
        async with translated_errors():
            await self._driver.verify_connectivity()


class Neo4jTransaction:
    """An explicit transaction on Neo4j, held open across statements until it ends.

    Its statements run one at a time (the caller serialises them) with the transaction's
    metadata and timeout; after a statement fails, Neo4j has rolled the transaction back, and
    only :meth:`rollback` and :meth:`close` remain useful.
    """

    def __init__(self, session: AsyncSession, transaction: AsyncTransaction) -> None:
        self._session = session
        self._transaction = transaction

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution) -> AsyncIterator[RowStream]:
        """Start the statement in the transaction; its rows stream inside the block."""
        async with translated_errors():
            result = await _start(self._transaction.run, execution.statement, execution)

        async def finish() -> list[str]:
            return []  # bookmarks come with the commit

        try:
            yield DriverRows(result, execution, finish)
        except BaseException:
            # The transaction ends with it (the request path rolls it back) at once, as on a
            # RESET; the driver's rollback would first run the statement to its end.
            self._transaction.cancel()
            raise

    async def commit(self) -> list[str]:
        """Commit; the bookmarks of what was committed."""
        async with translated_errors():
            await self._transaction.commit()
            return list((await self._session.last_bookmarks()).raw_values)

    async def rollback(self) -> None:
        """Roll back (nothing to do if Neo4j already has, after a failed statement)."""
        async with translated_errors():
            if not self._transaction.closed():
                await self._transaction.rollback()

    async def close(self) -> None:
        """Give the session and its connection back; an open transaction is rolled back."""
        await _closed(self._session)


async def _closed(session: AsyncSession) -> None:
    """Close ``session``; failing to (its connection already lost) leaves nothing to undo."""
    with contextlib.suppress(Exception):
        await session.close()


async def _start(
    run: Callable[..., Awaitable[AsyncResult]], query: Any, execution: Execution
) -> AsyncResult:
    try:
        return await run(query, dict(execution.parameters))
    except (OverflowError, ValueError, TypeError) as exc:
        # The driver could not encode a parameter (an integer beyond 64 bits, say).
        raise BadRequest(
            "A parameter cannot be sent to Neo4j (out of range or of no Neo4j type).",
            reason=f"parameter_not_sendable:{type(exc).__name__}",
        ) from exc
