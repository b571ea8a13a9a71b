"""The embedded audit log: SQLite in WAL mode, append-only, written by one thread.

Appends from many requests are gathered by one writer task and committed together (group
commit), with ``synchronous=FULL`` so that a record acknowledged to the gateway is on disk.
Triggers refuse UPDATE and DELETE. Besides the canonical body and its hash, a few columns
(time, event, request, dag, database, verdict) are kept for queries; verification checks that
they agree with the body, so they cannot be edited to mislead a reviewer either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proxy.audit.record import (
    GENESIS_HASH,
    AuditEvent,
    ChainProblem,
    SealedRecord,
    seal,
    verify_chain,
)
from proxy.errors import AuditUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    request_id TEXT NOT NULL,
    dag TEXT,
    database TEXT,
    verdict TEXT NOT NULL,
    body TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records (time);
CREATE INDEX IF NOT EXISTS records_dag_time ON records (dag, time);
CREATE INDEX IF NOT EXISTS records_request ON records (request_id);
CREATE TRIGGER IF NOT EXISTS records_no_update BEFORE UPDATE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
CREATE TRIGGER IF NOT EXISTS records_no_delete BEFORE DELETE ON records
BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END;
"""

_COLUMNS = ("time", "event", "request_id", "dag", "database", "verdict")


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a record is durable: its place and hash in the chain."""

    seq: int
    hash: str


class SQLiteAuditLog:
    """An :class:`~proxy.audit.AuditLog` in one SQLite file."""

    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self._path = path
        self._max_batch = max_batch
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._connection: sqlite3.Connection | None = None
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._queue: asyncio.Queue[tuple[AuditEvent, asyncio.Future[Receipt]] | None] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Open (creating if needed) the log and start the writer; call inside the event loop."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._open_sync)
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_sync)
        self._executor.shutdown(wait=True)

    async def append(self, event: AuditEvent) -> Receipt:
        """Append ``event``; returns once it is durable, raises :class:`AuditUnavailable` if not."""
        if self._writer is None or self._writer.done():
            raise AuditUnavailable(reason="audit_writer_stopped")
        future: asyncio.Future[Receipt] = asyncio.get_running_loop().create_future()
        await self._queue.put((event, future))
        return await future

    async def check_ready(self) -> None:
        """Raise unless the writer is running."""
        if self._writer is None or self._writer.done():
            raise AuditUnavailable(reason="audit_writer_stopped")

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        stopping = False
        while not stopping:
            item = await self._queue.get()
            batch: list[tuple[AuditEvent, asyncio.Future[Receipt]]] = []
            while item is not None:
                batch.append(item)
                if len(batch) >= self._max_batch or self._queue.empty():
                    break
                item = self._queue.get_nowait()
            stopping = item is None
            if not batch:
                continue
            try:
                receipts = await loop.run_in_executor(
                    self._executor, self._write_sync, [event for event, _ in batch]
                )
            except (sqlite3.Error, OSError, ValueError) as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            AuditUnavailable(reason=f"audit_write_failed:{type(exc).__name__}")
                        )
                continue
            for (_, future), receipt in zip(batch, receipts, strict=True):
                if not future.done():
                    future.set_result(receipt)

    def _open_sync(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        row = connection.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            self._head_seq, self._head_hash = int(row[0]), str(row[1])
        self._connection = connection

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _write_sync(self, events: list[AuditEvent]) -> list[Receipt]:
        connection = self._connection
        if connection is None:
            raise sqlite3.OperationalError("audit log is closed")
        seq, prev_hash = self._head_seq, self._head_hash
        rows = []
        receipts = []
        for event in events:
            seq += 1
            record = seal(event, seq=seq, prev_hash=prev_hash)
            prev_hash = record.hash
            rows.append(
                (
                    seq,
                    event.time,
                    event.event,
                    event.request_id,
                    event.dag,
                    event.database,
                    event.verdict,
                    record.body,
                    record.hash,
                )
            )
            receipts.append(Receipt(seq=seq, hash=record.hash))
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        # Only a committed batch moves the head: a failed one leaves the chain as it was.
        self._head_seq, self._head_hash = seq, prev_hash
        return receipts


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """What a reviewer asks for; every field narrows the result."""

    dag: str | None = None
    request_id: str | None = None
    verdict: str | None = None
    database: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None


class AuditReader:
    """Read-only access to a log file, for ``verify`` and ``query``."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no audit log at {path}")
        self._connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def count(self) -> int:
        """How many records the log holds."""
        return int(self._connection.execute("SELECT count(*) FROM records").fetchone()[0])

    def verify(self) -> Iterator[int | ChainProblem]:
        """The chain check of :func:`verify_chain`, plus agreement of the query columns."""
        stored: dict[int, tuple[tuple[Any, ...], str]] = {}

        def sealed() -> Iterator[SealedRecord]:
            cursor = self._connection.execute(
                "SELECT seq, time, event, request_id, dag, database, verdict, body, hash "
                "FROM records ORDER BY rowid"
            )
            for row in cursor:
                stored[int(row[0])] = (tuple(row[1:7]), str(row[7]))
                yield SealedRecord(seq=int(row[0]), body=str(row[7]), hash=str(row[8]))

        for step in verify_chain(sealed()):
            if isinstance(step, int):
                columns, body = stored.pop(step)
                if columns != _columns_of(json.loads(body)):
                    yield ChainProblem(step, "query columns differ from the record body (altered)")
                    return
            yield step

    def query(self, flt: RecordFilter) -> Iterator[dict[str, Any]]:
        """Records matching ``flt``, oldest first, as their documented JSON objects."""
        clauses: list[str] = []
        values: list[Any] = []
        for column, value, op in (
            ("dag", flt.dag, "="),
            ("request_id", flt.request_id, "="),
            ("verdict", flt.verdict, "="),
            ("database", flt.database, "="),
            ("time", flt.since, ">="),
            ("time", flt.until, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                values.append(value)
        sql = "SELECT body FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq"
        if flt.limit is not None:
            sql += " LIMIT ?"
            values.append(flt.limit)
        for (body,) in self._connection.execute(sql, values):
            document: dict[str, Any] = json.loads(body)
            yield document


def _columns_of(document: dict[str, Any]) -> tuple[Any, ...]:
    principal = document.get("principal") or {}
    decision = document.get("decision") or {}
    verdict = "allow" if decision.get("allow") is True else "deny"
    return (
        document.get("time"),
        document.get("event"),
        document.get("request_id"),
        principal.get("dag"),
        document.get("database"),
        verdict,
    )
