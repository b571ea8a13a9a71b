"""A statement's records as they arrive on a connection of the relay's own
(:mod:`proxy.neo4j.relay`), and the exchanges answered by a summary alone.

:class:`RelayRows` is a :class:`~proxy.statement.RecordStream`: besides rows as Bolt values (for
the row limit and for any front door that reads them), :meth:`RelayRows.records` hands each
record out as the raw message Neo4j sent, which the Bolt door forwards without decoding.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from proxy.codec import wire
from proxy.codec.packstream import PackStreamError, unpack
from proxy.errors import (
    AnswerNotWritable,
    GraphFailed,
    GraphUnavailable,
    RowLimitExceeded,
    WriteOutcomeUnknown,
)
from proxy.neo4j.bolt import (
    DISCARD,
    FAILURE,
    PULL,
    RECORD,
    SUCCESS,
    BoltConnection,
    Refused,
    failure_error,
    metadata_of,
    tag_of,
)
from proxy.neo4j.row_limit import RowBudget
from proxy.neo4j.summaries import summary_of
from proxy.statement import JSON, Execution, Summary

# Records asked for per PULL: enough for most answers in one round trip, few enough that a
# slow caller holds back Neo4j (its reading paces ours).
PULL_BATCH = 1000
PULL_MESSAGE = wire.encode(PULL, {"n": PULL_BATCH})  # the same message every time: packed once


class RelayRows:
    """A :class:`~proxy.statement.RecordStream` over records arriving on a connection."""

    def __init__(
        self, connection: BoltConnection, execution: Execution, *, auto_commit: bool
    ) -> None:
        self._connection = connection
        self._auto_commit = auto_commit  # its transaction commits when the last row is sent
        # Lost once sent, it may have written: never answered as transient then.
        self._may_write = auto_commit and execution.access_mode == "WRITE"
        self._budget = RowBudget(execution)
        self._fields: list[str] = []
        self._streaming = False  # records or a PULL's summary still to come
        self._done = False
        self._final: dict[str, Any] | None = None
        self._summary: Summary | None = None
        # Read by settle(), for the reader: the rest of a batch, and whether more were offered.
        self._kept: deque[bytes] | None = None  # made by settle() only: none per statement
        self._more = False

    @classmethod
    async def start(
        cls, connection: BoltConnection, execution: Execution, run: bytes, *, auto_commit: bool
    ) -> RelayRows:
        """Send ``run`` with a ``PULL``; the stream once Neo4j accepted the statement.
        ``auto_commit``: ``run`` is a statement in a transaction of its own."""
        rows = cls(connection, execution, auto_commit=auto_commit)
        connection.send(run + PULL_MESSAGE)
        answer = await rows._receive()
        if tag_of(answer) == FAILURE:
            await connection.receive()  # the PULL, IGNORED
            raise refused(answer)
        fields = metadata_of(answer).get("fields")
        rows._fields = [str(name) for name in fields] if isinstance(fields, list) else []
        rows._streaming = True
        return rows

    @property
    def fields(self) -> list[str]:
        return self._fields

    def __aiter__(self) -> AsyncIterator[list[JSON]]:
        return self._decoded()

    async def _decoded(self) -> AsyncIterator[list[JSON]]:
        """Each record's values, decoded once (for the limit and for the reader alike)."""
        while not self._done:
            message = await self._next()
            if message is None:
                return
            values = self._values(message)
            if not self._within_limit(values):
                return
            yield values

    async def records(self) -> AsyncIterator[bytes]:
        """Each record as the raw ``RECORD`` message Neo4j sent (unframed), up to the limit."""
        while not self._done:
            message = await self._next()
            if message is None:
                return
            if self._budget.limit is None:
                self._budget.count += 1  # nothing to weigh: the record stays undecoded
            elif not self._within_limit(self._values(message)):
                return
            yield message

    def _values(self, message: bytes) -> list[JSON]:
        """A record's values, decoded; one beyond the decoder's bounds (nested too deep) fails
        the statement as an answer the gateway cannot give, not as its own error."""
        try:
            values: list[JSON] = unpack(message).fields[0]
        except PackStreamError as exc:
            self._done = True
            raise AnswerNotWritable(
                f"A value in the statement's result cannot be read: {exc}.",
                reason="answer_not_writable:undecodable",
            ) from exc
        return values

    def _within_limit(self, values: list[JSON]) -> bool:
        """Count a record; False (or :class:`RowLimitExceeded`) once it is past the limit."""
        try:
            admitted = self._budget.admit(values)
        except RowLimitExceeded:
            self._done = True
            raise
        self._done = not admitted
        return admitted

    async def settle(self) -> bool:
        """Read the rest of the batch Neo4j is sending (kept for the reader); whether Neo4j still
        holds the statement open, with more rows to ask for, so that its auto-commit transaction
        can still be rolled back, rather than finished (its last row sent: committed)."""
        kept = self._kept = self._kept or deque()
        while self._streaming:
            message = await self._receive()
            tag = tag_of(message)
            if tag == SUCCESS:
                self._streaming = False
                metadata = metadata_of(message)
                if metadata.get("has_more"):
                    self._more = True
                else:
                    self._final = metadata
            else:  # a record, or the failure _next raises in its turn
                kept.append(message)
                self._streaming = tag == RECORD
        return self._more

    async def _next(self) -> bytes | None:
        """The next record, asking for more while Neo4j has them; None after the last."""
        if self._kept:  # read by settle()
            message = self._kept.popleft()
            if tag_of(message) == RECORD:
                return message
            self._done = True
            raise refused(message)
        if self._more:
            self._more = False
            self._send(PULL_MESSAGE)
            self._streaming = True
        while self._streaming:
            message = await self._receive()
            tag = tag_of(message)
            if tag == RECORD:
                return message
            self._streaming = False
            if tag != SUCCESS:
                self._done = True
                raise refused(message)
            metadata = metadata_of(message)
            if metadata.get("has_more"):
                self._send(PULL_MESSAGE)
                self._streaming = True
            else:
                self._final = metadata
        self._done = True
        return None

    async def close(self, *, discard: bool) -> None:
        """Leave the connection ready: the rest of an unfinished result discarded (``discard``:
        as the driver's session does; its auto-commit transaction commits) or, on a failure,
        left to the pool's reset."""
        if self._final is not None or self._connection.failed or self._connection.broken:
            return
        await self.settle()  # the rest of the batch asked for
        self._kept = None  # nobody reads it now
        if self._final is not None or self._connection.failed:
            return
        if discard:
            try:
                self._final = await summarised(self._connection, wire.encode(DISCARD, {"n": -1}))
            except GraphUnavailable:
                self._lost()
                raise
        else:
            self._connection.failed = True  # reset by the pool

    def _send(self, message: bytes) -> None:
        """Send a further message of the statement (see :meth:`_lost`)."""
        try:
            self._connection.send(message)
        except GraphUnavailable:
            self._lost()
            raise

    async def _receive(self) -> bytes:
        """The connection's next answer (see :meth:`_lost`)."""
        try:
            return await self._connection.receive()
        except GraphUnavailable:
            self._lost()
            raise

    def _lost(self) -> None:
        """Called with the connection's loss being raised: a statement that may have written
        (and committed as it ended) is :class:`WriteOutcomeUnknown` instead, never transient."""
        if self._may_write and self._connection.broken:
            raise WriteOutcomeUnknown

    def committed(self) -> Summary | None:
        if not self._auto_commit or self._final is None:
            return None
        return summary_of(self._final, self._budget.count, self._budget.truncated)

    async def summary(self) -> Summary:
        if self._summary is None:
            async for _ in self.records():  # rows nobody read still count towards the limit
                pass
            if self._final is None:  # stopped at the limit: the rest is dropped
                await self.close(discard=True)
            self._summary = summary_of(
                self._final or {}, self._budget.count, self._budget.truncated
            )
        return self._summary


async def summarised(connection: BoltConnection, message: bytes) -> dict[str, Any]:
    """Send one message answered by a summary alone; its metadata, or the failure raised."""
    (answer,) = await connection.exchange(message, 1)
    if tag_of(answer) != SUCCESS:
        raise refused(answer)
    return metadata_of(answer)


def refused(answer: bytes) -> Exception:
    if tag_of(answer) == FAILURE:
        return failure_error(Refused(metadata_of(answer)))
    return GraphFailed(reason="bolt_answer_ignored")
