"""Running the Bolt door's statements on connections of our own, their records relayed as Neo4j
sent them (see :mod:`proxy.neo4j.bolt` for why not the driver).

:class:`RelayExecutor` is a :class:`~proxy.gateway.seams.GraphExecutor` like
:class:`~proxy.neo4j.executor.Neo4jExecutor`, with the same semantics: an auto-commit statement
runs in one round trip (``RUN`` and ``PULL`` sent together), never retried; a writing statement
under a row limit that must fail runs in an explicit transaction, rolled back past the limit
(``Execution.rolled_back_past_limit``: not one that commits in batches of its own); an
explicit transaction holds its connection until it ends. Its row streams are
:class:`~proxy.neo4j.relay_rows.RelayRows`, whose records the Bolt door forwards undecoded.

Who a statement runs as is the :class:`~proxy.neo4j.logins.Login`'s credential, on a pool of
that user's own connections (:class:`UserBoltPools`), closed when its lease is dropped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Mapping
from typing import Any

from proxy.codec import wire
from proxy.codec.packstream import PackStreamError
from proxy.codec.values import to_wire
from proxy.errors import (
    BadRequest,
    CommitOutcomeUnknown,
    GraphFailed,
    GraphUnavailable,
    NothingSent,
)
from proxy.neo4j.bolt import (
    BEGIN,
    COMMIT,
    ROLLBACK,
    RUN,
    Address,
    BoltConnection,
    BoltPool,
)
from proxy.neo4j.logins import Login
from proxy.neo4j.relay_rows import RelayRows, summarised
from proxy.neo4j.secret_sources import Credential
from proxy.statement import AccessMode, Execution, Opening


class UserBoltPools:
    """A :class:`BoltPool` per credential, opened on first use (a leased user's password never
    changes; the gateway's own credential gets a new pool when it rotates)."""

    def __init__(
        self,
        address: Address,
        *,
        size: int = 100,
        lifetime_s: float = 3600.0,
        connect_timeout_s: float = 30.0,
        acquire_timeout_s: float = 60.0,
    ) -> None:
        self._address = address
        self._size = size
        self._lifetime_s = lifetime_s
        self._connect_timeout_s = connect_timeout_s
        self._acquire_timeout_s = acquire_timeout_s
        self._pools: dict[Credential, BoltPool] = {}

    def pool(self, credential: Credential) -> BoltPool:
        pool = self._pools.get(credential)
        if pool is None:
            # A rotated credential replaces its user's pool; connections in use finish first.
            for stale in [c for c in self._pools if c.user == credential.user]:
                self._pools.pop(stale).close()
            pool = self._pools[credential] = BoltPool(
                self._address,
                credential.user,
                credential.password,
                size=self._size,
                lifetime_s=self._lifetime_s,
                connect_timeout_s=self._connect_timeout_s,
                acquire_timeout_s=self._acquire_timeout_s,
            )
        return pool

    async def close_user(self, user: str) -> None:
        """Close ``user``'s pool (its lease is dropped)."""
        for credential in [c for c in self._pools if c.user == user]:
            self._pools.pop(credential).close()

    async def close(self) -> None:
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()


class RelayExecutor:
    """Runs statements on :class:`UserBoltPools` (see the module docstring)."""

    def __init__(self, pools: UserBoltPools) -> None:
        self._pools = pools

    def run(
        self, execution: Execution, login: Login
    ) -> contextlib.AbstractAsyncContextManager[RelayRows]:
        """Start the statement once, as ``login``; its rows stream inside the block."""
        extra = _transaction_extra(
            execution.database,
            execution.access_mode,
            execution.bookmarks,
            execution.metadata,
            execution.timeout_s,
        )
        if execution.rolled_back_past_limit:
            return self._rolled_back_past_limit(execution, extra, login)
        return _AutoCommit(self, execution, _run(execution, extra), login)

    @contextlib.asynccontextmanager
    async def _rolled_back_past_limit(
        self, execution: Execution, extra: dict[str, Any], login: Login
    ) -> AsyncIterator[RelayRows]:
        """A writing statement under a row limit that must fail: in an explicit transaction,
        committed once every row is within the limit, rolled back (by the pool's reset) if
        not."""
        # Packed (and a parameter Bolt cannot carry refused) before the transaction begins: a
        # refusal between BEGIN and RUN would give the connection back to the pool inside it.
        run = _run(execution)
        async with contextlib.AsyncExitStack() as held:

            async def start() -> BoltConnection:
                connection = await held.enter_async_context(self.connection(login))
                await _begun(connection, extra)
                return connection

            connection = await login.attempt(start)
            rows = await RelayRows.start(connection, execution, run, auto_commit=False)
            try:
                yield rows
                summary = await rows.summary()
            except BaseException:
                await rows.close(discard=False)  # the pool's reset rolls it back
                raise
            committed = await _ended(connection, COMMIT)
            bookmark = committed.get("bookmark")
            if isinstance(bookmark, str):
                summary.bookmarks.append(bookmark)

    async def begin(self, opening: Opening, login: Login) -> RelayTransaction:
        """Begin an explicit transaction as ``login``; it holds its connection until it ends."""

        async def start() -> RelayTransaction:
            stack = contextlib.AsyncExitStack()
            try:
                connection = await stack.enter_async_context(self.connection(login))
                extra = _transaction_extra(
                    opening.database,
                    opening.access_mode,
                    opening.bookmarks,
                    opening.metadata,
                    opening.timeout_s,
                )
                await _begun(connection, extra)
            except BaseException:
                await stack.aclose()
                raise
            return RelayTransaction(connection, stack)

        return await login.attempt(start)

    def connection(self, login: Login) -> contextlib.AbstractAsyncContextManager[BoltConnection]:
        """A connection of ``login``'s pool, for the block."""
        return self.pool(login).connection()

    def pool(self, login: Login) -> BoltPool:
        """``login``'s pool, for its credential now (a retry after a refused login asks
        again: the credential may have been refreshed)."""
        if login.credential is None:
            raise GraphFailed(reason="login_without_credential")
        return self._pools.pool(login.credential())


class RelayTransaction:
    """An explicit transaction on a connection of its own, until it commits or rolls back."""

    def __init__(self, connection: BoltConnection, stack: contextlib.AsyncExitStack) -> None:
        self._connection = connection
        self._stack = stack
        self._open = True

    @contextlib.asynccontextmanager
    async def run(self, execution: Execution) -> AsyncIterator[RelayRows]:
        """Start the statement in the transaction; its rows stream inside the block."""
        run = _run(execution)
        rows = await RelayRows.start(self._connection, execution, run, auto_commit=False)
        try:
            yield rows
        except BaseException:
            # The transaction ends with the statement (the request path rolls it back): the
            # pool's reset ends it on Neo4j at once, where discarding the rest ran it to its end.
            await rows.close(discard=False)
            raise
        else:
            await rows.close(discard=True)
        finally:
            if self._connection.failed:
                self._open = False  # Neo4j rolled it back

    async def commit(self) -> list[str]:
        """Commit; the bookmarks of what was committed."""
        self._open = False
        metadata = await _ended(self._connection, COMMIT)
        bookmark = metadata.get("bookmark")
        return [bookmark] if isinstance(bookmark, str) else []

    async def rollback(self) -> None:
        """Roll back (nothing to do if Neo4j already has, after a failed statement)."""
        if self._open and not self._connection.failed:
            self._open = False
            await _ended(self._connection, ROLLBACK)

    async def close(self) -> None:
        """Give the connection back; an open transaction is rolled back first (the pool
        resets a connection still in one)."""
        await self._stack.aclose()


class _AutoCommit:
    """One auto-commit statement on a connection of ``login``'s pool, for the block: ``RUN`` and
    ``PULL`` sent together, the rest of an unread result discarded at the end (its transaction
    commits), unless the block ends in an error (the caller reset or went away, an answer could
    not be written: the pool's reset rolls it back, so a statement recorded as failed never
    commits), the connection given back. A class, not a generator: each async context manager
    made of a generator costs about 2 µs more (the request path crosses several per statement).
    """

    __slots__ = ("_connection", "_execution", "_executor", "_login", "_pool", "_rows", "_run")

    def __init__(
        self, executor: RelayExecutor, execution: Execution, run: bytes, login: Login
    ) -> None:
        self._executor = executor
        self._execution = execution
        self._run = run
        self._login = login
        self._pool: BoltPool | None = None
        self._connection: BoltConnection | None = None
        self._rows: RelayRows | None = None

    async def __aenter__(self) -> RelayRows:
        return await self._login.attempt(self._start)

    async def _start(self) -> RelayRows:
        pool = self._executor.pool(self._login)
        while True:
            connection = await pool.acquire()
            try:
                rows = await RelayRows.start(
                    connection, self._execution, self._run, auto_commit=True
                )
            except NothingSent:
                await pool.release(connection)  # closed: it is broken
                if connection.fresh:
                    raise
                continue  # a pooled one Neo4j ended while it sat idle: nothing ran, try anew
            except BaseException:
                await pool.release(connection)
                raise
            self._pool, self._connection, self._rows = pool, connection, rows
            return rows

    async def __aexit__(self, failed: type[BaseException] | None, *_: object) -> None:
        pool, connection, rows = self._pool, self._connection, self._rows
        if pool is None or connection is None or rows is None:
            return  # never started
        try:
            await rows.close(discard=failed is None)
        finally:
            await pool.release(connection)


async def _begun(connection: BoltConnection, extra: dict[str, Any]) -> None:
    """Begin a transaction on ``connection``. Marked as in one before the BEGIN is sent, until
    :func:`_ended`: whatever ends its block in between, the pool resets it (Neo4j rolls back)."""
    connection.in_transaction = True
    await summarised(connection, _begin(extra))


async def _ended(connection: BoltConnection, tag: int) -> dict[str, Any]:
    """End the transaction on ``connection`` (``COMMIT`` or ``ROLLBACK``); the summary. A
    connection lost with the ``COMMIT`` sent may have committed: never a transient error then."""
    try:
        metadata = await summarised(connection, wire.encode(tag))
    except GraphUnavailable as exc:
        if tag == COMMIT and connection.broken:
            raise CommitOutcomeUnknown from exc
        raise
    connection.in_transaction = False
    return metadata


def _run(execution: Execution, extra: dict[str, Any] | None = None) -> bytes:
    """The ``RUN`` message, packed once: ``extra`` for an auto-commit statement, none inside an
    explicit transaction (which carries database, metadata and timeout). A parameter Bolt cannot
    carry (an integer beyond 64 bits, say) is refused here, before Neo4j."""
    try:
        parameters = {name: to_wire(value) for name, value in execution.parameters.items()}
        return wire.encode(RUN, execution.statement, parameters, extra or {})
    except (PackStreamError, OverflowError, ValueError, TypeError) as exc:
        raise BadRequest(
            "A parameter cannot be sent to Neo4j (out of range or of no Neo4j type).",
            reason=f"parameter_not_sendable:{type(exc).__name__}",
        ) from exc


def _begin(extra: dict[str, Any]) -> bytes:
    """The ``BEGIN`` message, packed once; the caller's metadata may be what cannot be sent."""
    try:
        return wire.encode(BEGIN, extra)
    except (PackStreamError, OverflowError, ValueError, TypeError) as exc:
        raise BadRequest(
            "The transaction's metadata cannot be sent to Neo4j.",
            reason=f"metadata_not_sendable:{type(exc).__name__}",
        ) from exc


def _transaction_extra(
    database: str,
    access_mode: AccessMode,
    bookmarks: tuple[str, ...],
    metadata: Mapping[str, Any],
    timeout_s: float,
) -> dict[str, Any]:
    extra: dict[str, Any] = {"db": database}
    if access_mode == "READ":
        extra["mode"] = "r"
    if bookmarks:
        extra["bookmarks"] = list(bookmarks)
    if metadata:
        try:
            extra["tx_metadata"] = {key: to_wire(value) for key, value in metadata.items()}
        except (PackStreamError, OverflowError, ValueError, TypeError) as exc:
            raise BadRequest(
                "The transaction's metadata cannot be sent to Neo4j.",
                reason=f"metadata_not_sendable:{type(exc).__name__}",
            ) from exc
    # Neo4j reads 0 as "no timeout": never round a short one down to it.
    extra["tx_timeout"] = max(1, math.ceil(timeout_s * 1000))
    return extra
