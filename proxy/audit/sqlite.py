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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from proxy.audit.checkpoint import Checkpoint, sign, signature_valid
from proxy.audit.record import (
    GENESIS_HASH,
    AuditEvent,
    ChainProblem,
    SealedRecord,
    seal,
    utc_timestamp,
    verdict_of,
    verify_chain,
)
from proxy.clock import Clock, system_clock
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


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that a record is durable: its place and hash in the chain."""

    seq: int
    hash: str


class SQLiteAuditLog:
    """An :class:`~proxy.audit.AuditLog` in one SQLite file."""

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

    async def open(self) -> None:
        """Open (creating if needed) the log and start the writer; call inside the event loop."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._open_sync)
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


@dataclass(frozen=True, slots=True)
class RecordFilter:
    """What a reviewer asks for; every field narrows the result."""

    dag: str | None = None
    event: str | None = None
    request_id: str | None = None
    verdict: str | None = None
    database: str | None = None
    since: str | None = None
    until: str | None = None
    subject: str | None = None
    reason: str | None = None
    text: str | None = None
    label: str | None = None
    after_seq: int | None = None
    before_seq: int | None = None
    newest_first: bool = False
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

    def verify(self, public_key: Ed25519PublicKey | None = None) -> Iterator[int | ChainProblem]:
        """The chain check of :func:`verify_chain`, the query columns, then the checkpoints.

        With ``public_key``, every checkpoint's signature is checked too; a log must reach its
        last checkpoint (else it was cut short) and match every checkpoint's hash.
        """
        hashes: dict[int, str] = {}
        for step in self._verify_records(hashes):
            yield step
            if isinstance(step, ChainProblem):
                return
        problem = self._check_checkpoints(hashes, public_key)
        if problem is not None:
            yield problem

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first (none in a log written before checkpoints existed)."""
        exists = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
        ).fetchone()
        if exists is None:
            return []
        rows = self._connection.execute(
            "SELECT chain, record_seq, record_hash, time, signature FROM checkpoints ORDER BY id"
        )
        return [Checkpoint(str(c), int(s), str(h), str(t), str(sig)) for c, s, h, t, sig in rows]

    def sealed_range(self, first: int, last: int) -> Iterator[tuple[int, str, str]]:
        """``(seq, body, hash)`` of records ``first`` to ``last``, in order."""
        rows = self._connection.execute(
            "SELECT seq, body, hash FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first, last),
        )
        for seq, body, digest in rows:
            yield int(seq), str(body), str(digest)

    def proof(self, seq: int) -> dict[str, Any] | None:
        """What proves record ``seq``: its body, the records after it up to the first checkpoint
        that covers it, and that checkpoint. ``None`` if the record does not exist or no
        checkpoint covers it yet. Check it with :func:`proxy.audit.checkpoint.verify_proof`."""
        covering = next((c for c in self.checkpoints() if c.record_seq >= seq), None)
        if covering is None:
            return None
        rows = self._connection.execute(
            "SELECT seq, body, hash FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (seq, covering.record_seq),
        ).fetchall()
        if not rows or rows[0][0] != seq:
            return None
        return {
            "seq": seq,
            "links": [{"seq": s, "body": body, "hash": h} for s, body, h in rows],
            "checkpoint": asdict(covering),
        }

    def _check_checkpoints(
        self, hashes: dict[int, str], public_key: Ed25519PublicKey | None
    ) -> ChainProblem | None:
        last_seq = max(hashes, default=0)
        for number, checkpoint in enumerate(self.checkpoints(), start=1):
            if public_key is not None and not signature_valid(checkpoint, public_key):
                return ChainProblem(
                    checkpoint.record_seq,
                    f"checkpoint {number} has no valid signature (forged or altered)",
                )
            if checkpoint.record_seq > last_seq:
                return ChainProblem(
                    last_seq + 1,
                    f"missing: checkpoint {number} covers records up to {checkpoint.record_seq}"
                    f" but the log ends at {last_seq} (cut short)",
                )
            if hashes[checkpoint.record_seq] != checkpoint.record_hash:
                return ChainProblem(
                    checkpoint.record_seq,
                    f"does not match checkpoint {number} (log replaced or rewritten)",
                )
        return None

    def _verify_records(self, hashes: dict[int, str]) -> Iterator[int | ChainProblem]:
        """The chain check of :func:`verify_chain`, plus agreement of the query columns."""
        stored: dict[int, tuple[tuple[Any, ...], str]] = {}

        def sealed() -> Iterator[SealedRecord]:
            cursor = self._connection.execute(
                "SELECT seq, time, event, request_id, dag, database, verdict, body, hash "
                "FROM records ORDER BY rowid"
            )
            for row in cursor:
                stored[int(row[0])] = (tuple(row[1:7]), str(row[7]))
                hashes[int(row[0])] = str(row[8])
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
            ("event", flt.event, "="),
            ("request_id", flt.request_id, "="),
            ("verdict", flt.verdict, "="),
            ("database", flt.database, "="),
            ("time", flt.since, ">="),
            ("time", flt.until, "<"),
        ):
            if value is not None:
                clauses.append(f"{column} {op} ?")
                values.append(value)
        # Fields without a column of their own are read from the body with SQLite's JSON1.
        if flt.subject is not None:
            clauses.append("json_extract(body, '$.principal.subject') = ?")
            values.append(flt.subject)
        if flt.reason is not None:
            clauses.append(
                "(json_extract(body, '$.error.reason') = ? OR EXISTS (SELECT 1 FROM"
                " json_each(json_extract(body, '$.decision.reasons')) WHERE value = ?))"
            )
            values += [flt.reason, flt.reason]
        if flt.text is not None:
            escaped = flt.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("json_extract(body, '$.statement') LIKE ? ESCAPE '\\'")
            values.append(f"%{escaped}%")
        if flt.label is not None:
            clauses.append(
                "EXISTS (SELECT 1 FROM json_each(json_extract(body, '$.analysis.labels.read'))"
                " WHERE value = ? UNION ALL SELECT 1 FROM"
                " json_each(json_extract(body, '$.analysis.labels.write')) WHERE value = ?)"
            )
            values += [flt.label, flt.label]
        if flt.after_seq is not None:
            clauses.append("seq > ?")
            values.append(flt.after_seq)
        if flt.before_seq is not None:
            clauses.append("seq < ?")
            values.append(flt.before_seq)
        sql = "SELECT body FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC" if flt.newest_first else " ORDER BY seq"
        if flt.limit is not None:
            sql += " LIMIT ?"
            values.append(flt.limit)
        for (body,) in self._connection.execute(sql, values):
            document: dict[str, Any] = json.loads(body)
            yield document

    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest record; ``None`` for an empty log."""
        row = self._connection.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def denials_by_dag(self, since: str) -> dict[str | None, dict[str, int]]:
        """Refused requests since ``since``, counted per DAG and hour (``YYYY-MM-DDTHH``).

        DAG ``None`` collects refusals of callers that no DAG could be resolved for.
        """
        rows = self._connection.execute(
            "SELECT dag, substr(time, 1, 13) AS hour, count(*) FROM records"
            " WHERE event = 'decision' AND verdict = 'deny' AND time >= ?"
            " GROUP BY dag, hour ORDER BY dag, hour",
            (since,),
        )
        counts: dict[str | None, dict[str, int]] = {}
        for dag, hour, count in rows:
            counts.setdefault(dag, {})[str(hour)] = int(count)
        return counts


def _columns_of(document: dict[str, Any]) -> tuple[Any, ...]:
    principal = document.get("principal") or {}
    decision = document.get("decision") or {}
    verdict = verdict_of(decision)
    return (
        document.get("time"),
        document.get("event"),
        document.get("request_id"),
        principal.get("dag"),
        document.get("database"),
        verdict,
    )
