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

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import neo4j
from neo4j import AsyncDriver, AsyncGraphDatabase, Bookmarks
from neo4j import exceptions as neo4j_errors

from proxy.analysis import Analysis, QueryType
from proxy.credentials import RotatingAuth, Rotator
from proxy.errors import (
    BadRequest,
    CypherGateError,
    DatabaseNotFound,
    GraphFailed,
    GraphUnavailable,
    Neo4jClientError,
    RowLimitExceeded,
)
from proxy.faults import NO_FAULTS, Faults
from proxy.leases import Lease, LeaseManager
from proxy.metrics import Metrics
from proxy.plan import read_plan
from proxy.policy import AccessMode, RowLimitAction
from proxy.secret_sources import Credential, open_source
from proxy.settings import Neo4jSettings, refuse_placeholder_password

JSON = Any
log = logging.getLogger(__name__)
_T = TypeVar("_T")
UNAUTHORIZED = "Neo.ClientError.Security.Unauthorized"
RATE_LIMITED = "Neo.ClientError.Security.AuthenticationRateLimit"
MAX_RATE_LIMIT_WAITS = 2

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


@dataclass(frozen=True, slots=True)
class Checkout:
    """The credential a request will run as (its user, for the audit record) and the way to
    run with it; valid until the ``checkout`` block ends."""

    user: str
    run: Callable[[Execution], Awaitable[QueryResult]]


class GraphExecutor(Protocol):
    """Plans and runs statements on Neo4j.

    Contract: ``checkout(dag)`` yields the credential the DAG's statement will run as, held
    (never dropped or rotated away) until the block ends; its ``run`` runs the statement at most
    once, in a transaction of the given access mode. Errors are the gateway's own (4xx for the
    caller's mistakes, 5xx for Neo4j trouble).
    """

    async def explain(self, database: str, statement: str) -> Analysis: ...

    def checkout(self, dag: str) -> AbstractAsyncContextManager[Checkout]: ...

    async def check_ready(self) -> None: ...

    async def describe(self) -> dict[str, str]:
        """Neo4j's ``version`` and ``edition``."""
        ...


class Neo4jGraph:
    """A :class:`GraphExecutor` on the official async driver, with the gateway's credential
    (rotated when ``rotation_interval_s`` says so) or a leased user per DAG."""

    def __init__(
        self,
        settings: Neo4jSettings,
        *,
        manage: bool = True,
        development: bool = False,
        faults: Faults = NO_FAULTS,
        metrics: Metrics | None = None,
    ) -> None:
        # Only the serving gateway manages credentials (settles rotations, rotates, leases);
        # a command-line tool beside it must not race it.
        self._manage = manage
        self._settings = settings
        self._development = development
        self._faults = faults
        self._metrics = metrics or Metrics()
        self._driver: AsyncDriver | None = None
        self._auth: RotatingAuth | None = None
        self._rotator: Rotator | None = None
        self._leases: LeaseManager | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._description: dict[str, str] | None = None

    async def open(self) -> None:
        """Read the credential, settle an interrupted rotation, create the driver and leases."""
        settings = self._settings
        source = open_source(settings, development=self._development)
        async with _translated_errors():
            credential = await source.current()
            # Whichever source it came from (a file, Secrets Manager, the environment).
            refuse_placeholder_password(credential.password)
            self._auth = RotatingAuth(source, credential)
            self._rotator = Rotator(settings.uri, source, self._auth, faults=self._faults)
            if self._manage:
                await self._rotator.recover()
            self._driver = AsyncGraphDatabase.driver(
                settings.uri,
                auth=self._auth,
                user_agent="cyphergate",
                max_connection_lifetime=settings.max_connection_lifetime_s,
            )
            if self._manage and settings.credentials == "leases":
                self._leases = LeaseManager(
                    self._driver,
                    path=settings.leases_path,
                    prefix=settings.lease_user_prefix,
                    ttl_s=settings.lease_ttl_s,
                    renew_fraction=settings.lease_renew_fraction,
                    faults=self._faults,
                    metrics=self._metrics,
                )
                await self._leases.open()
        if self._manage and settings.rotation_interval_s > 0:
            self._rotation = asyncio.create_task(self._rotate_periodically())

    async def close(self) -> None:
        """Stop rotating, drop the leases, close the driver and its connections."""
        if self._rotation is not None:
            self._rotation.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._rotation
        if self._leases is not None:
            await self._leases.close()
        if self._driver is not None:
            await self._driver.close()

    async def rotate(self) -> None:
        """Rotate the gateway's own password now (see proxy.credentials)."""
        if self._rotator is None:
            raise RuntimeError("Neo4jGraph.open() was not called")
        async with _translated_errors():
            await self._rotator.rotate()

    @contextlib.asynccontextmanager
    async def checkout(self, dag: str) -> AsyncIterator[Checkout]:
        """The credential ``dag``'s statement runs as; see :class:`GraphExecutor`."""
        if self._leases is None:
            # The user in use: a secret's "username" may differ from neo4j.user.
            yield Checkout(user=self._credential_in_use().user, run=self._run_as_gateway)
            return
        leases = self._leases
        async with contextlib.AsyncExitStack() as held:

            async def hold() -> Lease:
                # Creating a lease logs in as the gateway: the same retries as its statements.
                async with _translated_errors():  # only Neo4j's, never the caller's block's
                    return await held.enter_async_context(leases.hold(dag))

            lease = await self._retrying_login(hold)
            auth = lease.credential.auth()

            async def run(execution: Execution) -> QueryResult:
                return await self._run(execution, auth)

            yield Checkout(user=lease.user, run=run)

    async def _rotate_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._settings.rotation_interval_s)
            try:
                await self.rotate()
            except CypherGateError as error:  # try again next time; requests are unaffected
                self._metrics.rotations.labels("failed").inc()
                log.error("password rotation failed: %s", error.reason)
            except Exception as exc:  # a malformed secret, say: keep the task (and say why)
                self._metrics.rotations.labels("failed").inc()
                log.error("password rotation failed: %s", type(exc).__name__)
            else:
                self._metrics.rotations.labels("ok").inc()

    async def _run_as_gateway(self, execution: Execution) -> QueryResult:
        return await self._retrying_login(lambda: self._run(execution, None))

    async def _retrying_login(self, attempt: Callable[[], Awaitable[_T]]) -> _T:
        """``attempt()``, tried again when Neo4j refused the gateway's login. A refused login
        ran nothing, so trying again is safe.

        - ``Unauthorized`` (once): the password was rotated elsewhere; again with the store's
          newest value (see :meth:`RotatingAuth.refresh`).
        - ``AuthenticationRateLimit`` (at most twice): too many refused logins (several
          connections opened at once with the old password, say), so Neo4j refuses every login
          of the user for its ``dbms.security.auth_lock_time``; again after
          ``auth_lock_time_s``, with the store re-read, since another wrong password would lock
          the user once more.
        """
        refreshed, waits = False, 0
        while True:
            in_use = None if self._auth is None else self._auth.credential
            try:
                return await attempt()
            except GraphFailed as error:
                if self._auth is None:
                    raise
                if error.reason == UNAUTHORIZED and not refreshed:
                    refreshed = True
                    if not await self._auth.refresh(refused=in_use):
                        raise
                elif error.reason == RATE_LIMITED and waits < MAX_RATE_LIMIT_WAITS:
                    waits += 1
                    log.warning(
                        "Neo4j refuses logins for a while (AuthenticationRateLimit); "
                        "trying again in %.1f s",
                        self._settings.auth_lock_time_s,
                    )
                    self._auth.reread()
                    await asyncio.sleep(self._settings.auth_lock_time_s)
                else:
                    raise
                self._metrics.login_retries.labels(error.reason.rsplit(".", 1)[-1]).inc()

    def _credential_in_use(self) -> Credential:
        if self._auth is None:
            raise RuntimeError("Neo4jGraph.open() was not called")
        return self._auth.credential

    @property
    def driver(self) -> AsyncDriver:
        if self._driver is None:
            raise RuntimeError("Neo4jGraph.open() was not called")
        return self._driver

    async def explain(self, database: str, statement: str) -> Analysis:
        """Plan ``statement`` with EXPLAIN (nothing runs) and read what it touches."""
        return await self._retrying_login(lambda: self._explain(database, statement))

    async def _explain(self, database: str, statement: str) -> Analysis:
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

    async def _run(self, execution: Execution, auth: neo4j.Auth | None) -> QueryResult:
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
                database=execution.database,
                default_access_mode=mode,
                bookmarks=bookmarks,
                auth=auth,
                # Notifications are not forwarded to callers; do not have Neo4j send them.
                notifications_min_severity="OFF",
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
