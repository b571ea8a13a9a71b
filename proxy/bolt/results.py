"""A statement's result held open across a Bolt client's ``PULL`` messages.

The request path hands a statement's rows out inside a block (``Gateway.run``); a Bolt client
asks for them ``n`` at a time, in messages of its own. :class:`OpenResult` keeps that block open
between the messages, turns each row into Bolt values as it goes (nothing is buffered whole: at
most one row is read ahead, to tell the client whether more follow), and closes the block when
the rows end, so the request path records the outcome then. A result opened with ``lineage``
adds what the statement touched to the metadata of its last ``SUCCESS`` (``lineage``, the
document of :class:`proxy.lineage.Lineage`).
"""

from __future__ import annotations

import asyncio
import sys
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, suppress
from typing import Any

from proxy.bolt.messages import ALL_NOTICES, Notices
from proxy.codec.packstream import Structure, pack
from proxy.codec.values import to_wire
from proxy.errors import ClientEnded, CypherGateError, PayloadTooLarge, TransactionTimedOut
from proxy.gateway.call import Call
from proxy.gateway.path import Gateway
from proxy.gateway.transactions import Transaction
from proxy.lineage import Lineage
from proxy.statement import JSON, Execution, RowStream, Summary

_RECORD = b"\x71"
# Rows sent before the connection's buffer is drained (the client's reading paces Neo4j's).
_FLUSH_EVERY = 256
# Summary counters, as Bolt names them.
_STATS = {
    "nodesCreated": "nodes-created",
    "nodesDeleted": "nodes-deleted",
    "relationshipsCreated": "relationships-created",
    "relationshipsDeleted": "relationships-deleted",
    "propertiesSet": "properties-set",
    "labelsAdded": "labels-added",
    "labelsRemoved": "labels-removed",
    "indexesAdded": "indexes-added",
    "indexesRemoved": "indexes-removed",
    "constraintsAdded": "constraints-added",
    "constraintsRemoved": "constraints-removed",
    "systemUpdates": "system-updates",
    "containsUpdates": "contains-updates",
    "containsSystemUpdates": "contains-system-updates",
}


class ResultSink(ABC):
    """Where a pulled result's records go."""

    @abstractmethod
    async def record(self, message: bytes) -> None:
        """Send one ``RECORD`` message (packed, not yet framed)."""

    @abstractmethod
    async def flush(self) -> None:
        """Wait until what was sent has left (back-pressure)."""


class Sink(ResultSink):
    """A :class:`ResultSink` of a connection's two ways to send: a packed record, and a flush."""

    def __init__(
        self, send_packed: Callable[[bytes], Awaitable[None]], flush: Callable[[], Awaitable[None]]
    ) -> None:
        self._send_packed = send_packed
        self._flush = flush

    async def record(self, message: bytes) -> None:
        await self._send_packed(message)

    async def flush(self) -> None:
        await self._flush()


class OpenResult:
    """One statement's rows, streamed ``n`` at a time (see the module docstring)."""

    def __init__(
        self,
        gateway: Gateway,
        call: Call,
        transaction: Transaction | None = None,
        *,
        lineage: bool = False,
        notices: Notices = ALL_NOTICES,
    ) -> None:
        self._gateway = gateway
        self._notices = notices  # the notifications the client asked for
        self.call = call
        self._transaction = transaction
        self._wants_lineage = lineage
        self._lineage: Lineage | None = None
        # The request path's block (Gateway.run), open from start() until the rows end.
        self._run: AbstractAsyncContextManager[RowStream] | None = None
        self._rows: RowStream | None = None
        self._records: AsyncIterator[bytes] | None = None
        self._ahead: bytes | None = None  # the record read to know whether more follow
        # Once buffered (another statement of its transaction started): its records, its end,
        # and the memory they take (less as they are pulled).
        self._buffered: deque[bytes] | None = None
        self.held_bytes = 0
        self._final: dict[str, Any] = {}
        self._started = 0.0
        self.t_first_ms = 0
        # When the statement's time-out ends (event-loop time), once it runs: a result still open
        # then is one Neo4j would have ended (the door holds the client to it).
        self.due: float | None = None

    async def start(self) -> list[str]:
        """Run the statement down the request path; its field names. A refusal or failure is
        raised (and already recorded)."""
        self._started = time.monotonic()
        run = self._gateway.run(
            self.call,
            transaction=self._transaction,
            on_lineage=self._keep_lineage if self._wants_lineage else None,
            on_execution=self._runs,
        )
        try:
            self._rows = await run.__aenter__()
        except BaseException:
            self.call.trace.end()
            raise
        self._run = run
        self.t_first_ms = _ms_since(self._started)
        return self._rows.fields

    async def buffer(self, max_bytes: int, *, others: int = 0) -> None:
        """Read the rest of the rows now, to be pulled later: the next statement of the same
        transaction is about to run (a Neo4j transaction runs one statement at a time, on one
        connection). The policy's row limit and ``max_bytes`` bound what is held, with the
        ``others`` bytes the connection's other results already hold (a client that starts
        statement after statement without reading any must not hold ``max_bytes`` for each):
        beyond them this statement fails (recorded), and with it the transaction. A result
        already buffered stays as it is."""
        if self._buffered is not None:
            return
        rows: deque[bytes] = deque()
        held = others

        class Keep(ResultSink):
            async def record(self, message: bytes) -> None:
                nonlocal held
                held += sys.getsizeof(message) + 8  # the memory it takes, and its slot
                if held > max_bytes:
                    raise PayloadTooLarge(
                        f"The results left unread take more than {max_bytes} bytes"
                        " (server.bolt_max_held_result_bytes), too much to hold while the"
                        " transaction's next statement runs: read a result before starting the"
                        " next statement.",
                        reason="held_result_too_large",
                    )
                rows.append(message)

            async def flush(self) -> None:
                return None

        self._final = await self.pull(-1, Keep(), discard=False)
        self._buffered, self.held_bytes = rows, held - others

    async def pull(self, n: int, sink: ResultSink, *, discard: bool) -> dict[str, Any]:
        """Send up to ``n`` rows (all for -1) to ``sink``, or drop them (``discard``); the
        metadata of the ``SUCCESS`` that follows. A failure ends the statement (recorded) and is
        raised."""
        if self._buffered is not None:
            return await self._pull_buffered(self._buffered, n, sink, discard=discard)
        rows = self._rows
        if rows is None:
            raise RuntimeError("pull() before start()")
        try:
            sent = 0
            while n == -1 or sent < n:
                record = await self._next(rows)
                if record is None:
                    break
                if not discard:
                    await sink.record(record)
                sent += 1
                if sent % _FLUSH_EVERY == 0:
                    await sink.flush()
            if n != -1 and sent == n:
                self._ahead = await self._next(rows)
                if self._ahead is not None:
                    return {"has_more": True}
            summary = await rows.summary()
        except ConnectionError:
            # Writing to the client failed: it reset or closed its connection mid-answer (the
            # rows' own failures are the gateway's errors). It ends as a client that went away
            # ends it, recorded so; the connection closes as the error goes on.
            await self.abandon(cause="closed")
            raise
        except Exception as exc:
            # The request path records the failure (and may raise its own error instead).
            await self._end(exc)
            raise
        await self._end()  # the outcome is recorded now
        metadata = summary_metadata(
            summary, database=self.call.database, t_last=self.elapsed(), notices=self._notices
        )
        if self._lineage is not None:
            metadata["lineage"] = self._lineage.document()
        return metadata

    def _keep_lineage(self, lineage: Lineage) -> None:
        self._lineage = lineage

    def _runs(self, execution: Execution) -> None:
        self.due = asyncio.get_running_loop().time() + execution.timeout_s

    async def _pull_buffered(
        self, rows: deque[bytes], n: int, sink: ResultSink, *, discard: bool
    ) -> dict[str, Any]:
        while rows and (n == -1 or n > 0):
            record = rows.popleft()
            self.held_bytes -= sys.getsizeof(record) + 8
            if not discard:
                await sink.record(record)
            n -= 1 if n != -1 else 0
        return {"has_more": True} if rows else self._final

    async def abandon(self, *, cause: str) -> None:
        """The result ends open: the client reset (``cause`` "client"), went away ("closed") or
        broke the protocol ("violation"), or its transaction passed its deadline ("expired"),
        and it ends as Neo4j ends it. A statement of an
        explicit transaction, and an auto-commit statement whose transaction Neo4j still holds
        open, end at once and their transaction is rolled back, the record saying why
        (``client_reset``, ``client_closed``, ``protocol_violation``,
        ``transaction_timed_out``; the transaction's end, ``client``, ``closed`` or
        ``expired``); an auto-commit one already committed is read to its end. A
        failure now is recorded, not raised: nobody is left to tell."""
        rows = self._rows
        if self._buffered is not None or rows is None or self._run is None:
            return  # nothing left open (or already ended: a write to the client failed)
        try:
            # A relayed auto-commit statement (RelayRows; duck-typed, as records() is) whose
            # result Neo4j still holds open is rolled back; one whose last row Neo4j has sent
            # (the relay asks for up to 1,000 at a time, as drivers do) has committed, and is
            # read to its end so that its record says so. A statement of a transaction ends at
            # once, as Neo4j ends it on a RESET: its transaction is rolled back (reading the rest
            # first ran it to its end, up to its time-out, and the client waited as long).
            settle = getattr(rows, "settle", None)
            if self._transaction is not None or (callable(settle) and await settle()):
                with suppress(CypherGateError):
                    await self._end(_ended_by(cause))
                return
            await rows.summary()
        except Exception as exc:
            with suppress(CypherGateError):
                await self._end(exc)
            return
        with suppress(CypherGateError):
            await self._end()

    async def _end(self, error: BaseException | None = None) -> None:
        """Close the request path's block (its outcome is recorded, with ``error`` if the rows
        ended in one), then the statement's span; once, however the result ends."""
        run, self._run = self._run, None
        if run is None:
            return
        try:
            if error is None:
                await run.__aexit__(None, None, None)
            else:
                await run.__aexit__(type(error), error, error.__traceback__)
        finally:
            self.call.trace.end()

    def elapsed(self) -> int:
        return _ms_since(self._started)

    async def _next(self, rows: RowStream) -> bytes | None:
        """The next ``RECORD`` message: as Neo4j sent it when the stream relays records
        (:class:`~proxy.statement.RecordStream`), else packed here from the row's values."""
        if self._ahead is not None:
            record, self._ahead = self._ahead, None
            return record
        if self._records is None:
            # A RecordStream's records() (duck-typed: isinstance against a runtime-checkable
            # Protocol inspects the class's members on every call, a cost per statement).
            records = getattr(rows, "records", None)
            self._records = records() if callable(records) else _packed(aiter(rows))
        try:
            return await anext(self._records)
        except StopAsyncIteration:
            return None


_ENDED_BY = {  # why an open result ended, by cause: what the client was told, and the reason
    "client": ("The client reset", "client_reset"),
    "closed": ("The client closed the connection", "client_closed"),
    "violation": ("The client broke the Bolt protocol", "protocol_violation"),
}


def _ended_by(cause: str) -> CypherGateError:
    if cause == "expired":  # the connection's transaction passed its deadline (session.py)
        return TransactionTimedOut(reason="transaction_timed_out")
    how, reason = _ENDED_BY[cause]
    return ClientEnded(
        f"{how} before reading the whole result: the statement's transaction was rolled back,"
        " as Neo4j does.",
        reason=reason,
        cause="client" if cause == "client" else "closed",
    )


async def _packed(rows: AsyncIterator[list[JSON]]) -> AsyncIterator[bytes]:
    async for row in rows:
        yield pack(Structure(_RECORD, ([to_wire(value) for value in row],)))


def summary_metadata(
    summary: Summary, *, database: str, t_last: int, notices: Notices = ALL_NOTICES
) -> dict[str, Any]:
    """The metadata of a finished result's ``SUCCESS``, as Neo4j sends it (with the
    notifications the client asked for)."""
    stats: Mapping[str, Any] = {
        _STATS[name]: value for name, value in summary.counters.items() if value and name in _STATS
    }
    updates = bool(summary.counters.get("containsUpdates"))
    metadata: dict[str, Any] = {
        "type": summary.query_type or ("rw" if updates else "r"),
        "t_last": t_last,
        "db": database,
    }
    if stats:
        metadata["stats"] = dict(stats)
    if summary.bookmarks:
        metadata["bookmark"] = summary.bookmarks[-1]
    if summary.plan is not None:
        metadata["plan"] = to_wire(dict(summary.plan))
    if shown := [to_wire(dict(n)) for n in summary.notifications if notices.shown(n)]:
        metadata["notifications"] = shown
    return metadata


def _ms_since(start: float) -> int:
    return int((time.monotonic() - start) * 1000)
