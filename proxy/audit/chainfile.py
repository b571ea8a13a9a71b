"""The audit log's file: SQLite in WAL mode, append-only, written from one thread at a time.

:class:`ChainFile` is the synchronous half of :class:`~proxy.audit.sqlite.SQLiteAuditLog`: it seals
events into the chain, commits them (with any checkpoint due) in one transaction with
``synchronous=FULL``, so that a record acknowledged to the gateway is on disk, and keeps the
chain's head. Only a committed transaction moves the head. Triggers refuse UPDATE and DELETE.
Besides the canonical body and its hash, a few columns (time, event, request, dag, database,
verdict) are kept for queries; verification (in proxy.audit.reader) checks that they agree with
the body, so they cannot be edited to mislead a reviewer either.

A batch of up to :data:`ROWS_PER_INSERT` records with no checkpoint due is one multi-row
``INSERT``, which SQLite runs as a transaction of its own (all rows or none): one call into
SQLite instead of a ``BEGIN``, a step per row and a ``COMMIT``. Each call lets Python's global
lock go and takes it back, which, while the event loop is busy, is a wait and a thread switch;
batches are five to nine records under load, so this is most of the writer's switches.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from proxy.audit.checkpoint import Checkpoint, sign
from proxy.audit.record import GENESIS_HASH, AuditEvent, Receipt, seal, utc_timestamp
from proxy.clock import Clock, system_clock
from proxy.faults import NO_FAULTS, Faults

log = logging.getLogger(__name__)

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
-- One row the writer rewrites to learn whether the file takes writes again; not a record.
CREATE TABLE IF NOT EXISTS probes (id INTEGER PRIMARY KEY, time TEXT NOT NULL);
"""

# audit.path = ":memory:" keeps the log in memory only: for benchmarks, never for production.
MEMORY = ":memory:"

# Rows in one INSERT statement at most (9 parameters each, far below SQLite's limit); the SQL
# for each count up to it is made once, and stays within the connection's statement cache.
ROWS_PER_INSERT = 64
# Only placeholders are joined into the SQL: the values are always bound parameters.
_INSERTS = tuple(
    "INSERT INTO records VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * count)  # noqa: S608
    for count in range(ROWS_PER_INSERT + 1)
)


def _chunks(rows: list[tuple[Any, ...]]) -> Iterator[tuple[str, list[Any]]]:
    """``rows`` as INSERT statements of at most :data:`ROWS_PER_INSERT` rows, with their
    parameters."""
    for start in range(0, len(rows), ROWS_PER_INSERT):
        chunk = rows[start : start + ROWS_PER_INSERT]
        yield _INSERTS[len(chunk)], [value for row in chunk for value in row]


class ChainFile:
    """One audit log file and the head of its chain. Not thread-safe: one thread uses it."""

    def __init__(
        self,
        path: Path,
        *,
        signing_key: Ed25519PrivateKey | None = None,
        chain_id: str = "gateway",
        checkpoint_every: int = 1000,
        checkpoint_interval_s: float = 60.0,
        clock: Clock = system_clock,
        faults: Faults = NO_FAULTS,
    ) -> None:
        self._path = path
        self._signing_key = signing_key
        self._chain_id = chain_id
        self._checkpoint_every = checkpoint_every
        self._checkpoint_interval_s = checkpoint_interval_s
        self._clock = clock
        self._faults = faults
        self._checkpointed_seq = 0
        self._checkpointed_at = clock()
        self._connection: sqlite3.Connection | None = None
        self._head_seq = 0
        self._head_hash = GENESIS_HASH

    def open(self) -> None:
        in_memory = str(self._path) == MEMORY
        if not in_memory:
            self._path.parent.mkdir(parents=True, exist_ok=True)
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
        self._connection = connection
        if self.unsealed:  # the tail a killed writer left: sealed before anything follows it
            self.checkpoint(force=True)

    @property
    def unsealed(self) -> bool:
        """Whether records follow the last checkpoint and a key could sign one."""
        return self._signing_key is not None and self._head_seq > self._checkpointed_seq

    def reopen(self) -> None:
        """A fresh connection, and the chain's head as the file has it (after an unexpected
        error, what this object believed may not be what was committed)."""
        self.close()
        self.open()

    def probe(self) -> None:
        """Commit one small write outside the chain: does the file take writes again?"""
        connection = self._connection
        if connection is None:
            self.open()
            connection = self._connection
        if connection is None:
            raise sqlite3.OperationalError("audit log is closed")
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute(
                "INSERT OR REPLACE INTO probes VALUES (1, ?)", (utc_timestamp(self._clock()),)
            )
            connection.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute("ROLLBACK")
            raise

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def write(self, events: list[AuditEvent]) -> list[Receipt]:
        connection = self._connection
        if connection is None:
            raise sqlite3.OperationalError("audit log is closed")
        self._faults.reached("audit_batch")
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

    def checkpoint(self, force: bool) -> None:
        if self._connection is not None:
            self._commit(
                self._connection, [], self._head_seq, self._head_hash, force_checkpoint=force
            )

    def seal_idle(self) -> None:
        """A checkpoint over records that came before a quiet spell, if one is due (else they
        would wait unsigned for the next batch, however long that is). A failure is logged:
        the next commit tries again."""
        try:
            self.checkpoint(force=False)
        except (sqlite3.Error, OSError) as exc:
            log.error("the audit writer could not sign a checkpoint: %s", type(exc).__name__)

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
        checkpoint = self._checkpoint_due(seq, head_hash, force=force_checkpoint)
        if checkpoint is None and len(rows) <= ROWS_PER_INSERT:
            if rows:  # one statement: a transaction of its own, all rows or none
                connection.execute(*next(_chunks(rows)))
        else:
            connection.execute("BEGIN IMMEDIATE")
            try:
                for chunk in _chunks(rows):
                    connection.execute(*chunk)
                if checkpoint is not None:
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
                connection.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
                raise
        # Only a committed transaction moves the head: a failed one leaves the chain as it was.
        self._head_seq, self._head_hash = seq, head_hash
        if checkpoint is not None:
            self._checkpointed_seq, self._checkpointed_at = seq, self._clock()

    def _checkpoint_due(self, seq: int, head_hash: str, *, force: bool) -> Checkpoint | None:
        """The head signed, when enough records or time have passed since the last checkpoint."""
        if self._signing_key is None or seq <= self._checkpointed_seq:
            return None
        due = (
            force
            or seq - self._checkpointed_seq >= self._checkpoint_every
            or self._clock() - self._checkpointed_at >= self._checkpoint_interval_s
        )
        if not due:
            return None
        return sign(
            Checkpoint(self._chain_id, seq, head_hash, utc_timestamp(self._clock())),
            self._signing_key,
        )
