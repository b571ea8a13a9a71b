"""The embedded audit log: SQLite in WAL mode, append-only, written by one thread.

Appends from many requests are gathered by one writer task and committed together (group
commit), with ``synchronous=FULL`` so that a record acknowledged to the gateway is on disk.
Triggers refuse UPDATE and DELETE. Besides the canonical body and its hash, a few columns
(time, event, request, dag, database, verdict) are kept for queries; verification (in
proxy.audit.reader) checks that they agree with the body, so they cannot be edited to mislead a
reviewer either.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.audit.checkpoint import Checkpoint, sign
from proxy.audit.record import GENESIS_HASH, AuditEvent, Receipt, seal, utc_timestamp
from proxy.clock import Clock, system_clock
from proxy.errors import AuditChainTaken, AuditUnavailable
from proxy.locks import ExclusiveFile, FileTaken

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
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY,
    chain TEXT NOT NULL,
    record_seq INTEGER NOT NULL,
    record_hash TEXT NOT NULL,
    time TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS checkpoints_no_update BEFORE UPDATE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_no_delete BEFORE DELETE ON checkpoints
BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
"""

# audit.path = ":memory:" keeps the log in memory only: for benchmarks, never for production.
MEMORY = ":memory:"


class SQLiteAuditLog:
    """The audit log in one SQLite file (the request path's ``AuditLog``)."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 256,
        signing_key: Ed25519PrivateKey | None = None,
        chain_id: str = "gateway",
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        clock: Clock = system_clock,
    ) -> None:
        self._path = path
        self._max_batch = max_batch
        self._signing_key = signing_key
        self._chain_id = chain_id
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval_s = checkpoint_interval_s
        self._clock = clock
        self._checkpointed_seq = 0
        self._checkpointed_at = clock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="audit-writer")
        self._connection: sqlite3.Connection | None = None
        self._head_seq = 0
        self._head_hash = GENESIS_HASH
        self._queue: asyncio.Queue[tuple[AuditEvent, asyncio.Future[Receipt]] | None] = (
            asyncio.Queue()
        )
        self._writer: asyncio.Task[None] | None = None
        # One writer per chain, across processes: a second would fork the chain.
        self._ownership = None if str(path) == MEMORY else ExclusiveFile(path)

    async def open(self) -> None:
        """Open (creating if needed) the log and start the writer; call inside the event loop.

        Raises :class:`AuditChainTaken` if another process writes this chain already."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_sync)
        except FileTaken as taken:
            raise AuditChainTaken(str(self._path), taken.holder) from taken
        except (sqlite3.Error, OSError) as exc:
            raise AuditUnavailable(reason=f"audit_open_failed:{type(exc).__name__}") from exc
        self._writer = asyncio.create_task(self._write_loop(), name="audit-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
        loop = asyncio.get_running_loop()
        with contextlib.suppress(
            sqlite3.Error, OSError
        ):  # a final checkpoint, if it can be written
            await loop.run_in_executor(self._executor, self._checkpoint_sync, True)
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
        in_memory = str(self._path) == MEMORY
        if not in_memory:
            self._path.parent.mkdir(parents=True, exist_ok=True)
        if self._ownership is not None:
            self._ownership.acquire()
        try:
            self._connection = self._connect_sync(in_memory)
        except BaseException:
            if self._ownership is not None:
                self._ownership.release()
            raise

    def _connect_sync(self, in_memory: bool) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        if not in_memory:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
        connection.executescript(_SCHEMA)
        row = connection.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            self._head_seq, self._head_hash = int(row[0]), str(row[1])
        last = connection.execute("SELECT max(record_seq) FROM checkpoints").fetchone()
        self._checkpointed_seq = int(last[0] or 0)
        return connection

    def _close_sync(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._ownership is not None:
            self._ownership.release()

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
        self._commit(connection, rows, seq, prev_hash, force_checkpoint=False)
        return receipts

    def _checkpoint_sync(self, force: bool) -> None:
        if self._connection is not None:
            self._commit(
                self._connection, [], self._head_seq, self._head_hash, force_checkpoint=force
            )

    def _commit(
        self,
        connection: sqlite3.Connection,
        rows: list[tuple[Any, ...]],
        seq: int,
        head_hash: str,
        *,
        force_checkpoint: bool,
    ) -> None:
        """Insert ``rows`` (the chain up to ``seq``) and any checkpoint due, in one transaction."""
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            checkpointed = self._insert_checkpoint_if_due(
                connection, seq, head_hash, force=force_checkpoint
            )
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise
        # Only a committed transaction moves the head: a failed one leaves the chain as it was.
        self._head_seq, self._head_hash = seq, head_hash
        if checkpointed:
            self._checkpointed_seq, self._checkpointed_at = seq, self._clock()

    def _insert_checkpoint_if_due(
        self, connection: sqlite3.Connection, seq: int, head_hash: str, *, force: bool
    ) -> bool:
        """Sign the head into the checkpoints table when enough records or time have passed."""
        if self._signing_key is None or seq <= self._checkpointed_seq:
            return False
        due = (
            force
            or seq - self._checkpointed_seq >= self._checkpoint_every
            or self._clock() - self._checkpointed_at >= self._checkpoint_interval_s
        )
        if not due:
            return False
        checkpoint = sign(
            Checkpoint(self._chain_id, seq, head_hash, utc_timestamp(self._clock())),
            self._signing_key,
        )
        connection.execute(
            "INSERT INTO checkpoints (chain, record_seq, record_hash, time, signature)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                checkpoint.chain,
                checkpoint.record_seq,
                checkpoint.record_hash,
                checkpoint.time,
                checkpoint.signature,
            ),
        )
        return True
