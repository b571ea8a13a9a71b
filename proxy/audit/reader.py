"""Reading the audit log: queries for reviewers, and verification of the whole file.

Read-only (SQLite ``mode=ro``), so a reviewer's tool can never write to the log it checks.
:meth:`AuditReader.verify` checks the hash chain (see proxy.audit.record), that each record's
query columns agree with its body, and the signed checkpoints.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import string
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from proxy.audit.checkpoint import Checkpoint, signature_valid
from proxy.audit.filters import BadFilter, RecordFilter, utc_bound
from proxy.audit.record import (
    ChainProblem,
    SealedRecord,
    section,
    verdict_of,
    verify_chain,
)

# The filters live in proxy.audit.filters; every reader imports them from here too.
__all__ = ["AuditReader", "BadFilter", "DamagedLog", "NotAnAuditLog", "RecordFilter", "utc_bound"]


class NotAnAuditLog(ValueError):
    """A file given as an audit log that is none (or one SQLite cannot read)."""


class DamagedLog(NotAnAuditLog):
    """A record or checkpoint stored in a form no writer makes: the file was edited.

    Raised by the reads that cannot go on without it (a query, the checkpoints); ``verify``
    reports it as the chain's problem instead, as it does any other alteration.
    """


class AuditReader:
    """Read-only access to a log file, for ``verify`` and ``query``."""

    def __init__(self, path: Path) -> None:
        _check_readable(path)
        self._path = path
        # A URI, for mode=ro: the path is percent-encoded (as_uri), since a ``?``, ``#`` or
        # ``%`` in it would otherwise end it or be decoded, and open (even create) another file.
        self._connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
        try:
            self._connection.execute("SELECT seq, body, hash FROM records LIMIT 0")
        except sqlite3.DatabaseError as exc:  # not SQLite, or SQLite without our table
            self._connection.close()
            raise NotAnAuditLog(f"{path} is not an audit log ({exc})") from None
        self._connection.create_function(
            "statement_contains", 2, _statement_contains, deterministic=True
        )

    @property
    def path(self) -> Path:
        """The log file read."""
        return self._path

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> AuditReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def count(self) -> int:
        """How many records the log holds."""
        return int(self._connection.execute("SELECT count(*) FROM records").fetchone()[0])

    def verify(
        self,
        public_key: Ed25519PublicKey | None = None,
        *,
        chain: str | None = None,
        sealed_before: str | None = None,
    ) -> Iterator[int | ChainProblem]:
        """The chain check of :func:`verify_chain`, the query columns, then the checkpoints.

        A log must reach its last checkpoint (else it was cut short) and match every
        checkpoint's hash, and every checkpoint names one chain (``chain``, if given: another
        replica's or worker's file put in this one's place names its own). With
        ``public_key``, every checkpoint's signature is checked too, and, with
        ``sealed_before`` (a record time), no record written before it may follow the last
        checkpoint: a writer signs its tail within its checkpoint interval, idle or not, and
        when it starts again after being killed, so such a tail was cut and rewritten, or its
        writer was killed and has not started since; either way nothing proves it.
        """
        hashes: dict[int, str] = {}
        # One snapshot for records and checkpoints: a checkpoint the writer adds meanwhile
        # would seem to cover records this read does not hold ("cut short").
        self._connection.execute("BEGIN")
        try:
            for step in self._verify_records(hashes):
                yield step
                if isinstance(step, ChainProblem):
                    return
            try:
                problem = self._check_checkpoints(hashes, public_key, chain)
                if problem is None:
                    problem = self._nothing_proven(hashes, public_key, sealed_before)
                if problem is None and public_key is not None and sealed_before is not None:
                    problem = self._unsealed(sealed_before)
            except DamagedLog:  # nothing a checkpoint seals is proven: reported at the start
                problem = ChainProblem(
                    1, "a checkpoint's record number is not a whole number (checkpoints altered)"
                )
            if problem is not None:
                yield problem
        finally:  # (the connection may be closed already, if the caller stopped early)
            with contextlib.suppress(sqlite3.ProgrammingError):
                self._connection.execute("COMMIT")

    def checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint, oldest first (none in a log written before checkpoints existed)."""
        return self._checkpoints(
            "SELECT chain, record_seq, record_hash, time, signature FROM checkpoints ORDER BY id"
        )

    def covering(self, seq: int) -> Checkpoint | None:
        """The first checkpoint that seals record ``seq``, if one does yet."""
        found = self._checkpoints(
            "SELECT chain, record_seq, record_hash, time, signature FROM checkpoints"
            " WHERE record_seq >= ? ORDER BY id LIMIT 1",
            seq,
        )
        return found[0] if found else None

    def _checkpoints(self, query: str, *parameters: int) -> list[Checkpoint]:
        exists = self._connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'"
        ).fetchone()
        if exists is None:
            return []
        rows = self._connection.execute(query, parameters)
        found: list[Checkpoint] = []
        for chain, seq, digest, time, signature in rows:
            if type(seq) is not int:  # the column's INTEGER affinity stores any number as one
                raise DamagedLog(
                    f"{self._path}: a checkpoint's record number is not a whole number (altered)"
                )
            found.append(Checkpoint(str(chain), seq, str(digest), str(time), str(signature)))
        return found

    def sealed_range(self, first: int, last: int) -> Iterator[tuple[int, str, str]]:
        """``(seq, body, hash)`` of records ``first`` to ``last``, in order."""
        rows = self._connection.execute(
            "SELECT seq, body, hash FROM records WHERE seq BETWEEN ? AND ? ORDER BY seq",
            (first, last),
        )
        for seq, body, digest in rows:
            yield int(seq), str(body), str(digest)

    def records_after(self, seq: int, limit: int) -> list[tuple[int, str, str, str, str, str]]:
        """``(seq, time, event, verdict, body, hash)`` of the first ``limit`` records after
        ``seq``, in order (what a SIEM sink has not delivered yet)."""
        rows = self._connection.execute(
            "SELECT seq, time, event, verdict, body, hash FROM records WHERE seq > ?"
            " ORDER BY seq LIMIT ?",
            (seq, limit),
        )
        return [
            (int(s), str(t), str(event), str(verdict), str(body), str(h))
            for s, t, event, verdict, body, h in rows
        ]

    def hash_of(self, seq: int) -> str | None:
        """The hash of record ``seq``, if the log holds it."""
        row = self._connection.execute("SELECT hash FROM records WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else str(row[0])

    def proof(self, seq: int) -> dict[str, Any] | None:
        """What proves record ``seq``: its body, the records after it up to the first checkpoint
        that covers it, and that checkpoint. ``None`` if the record does not exist or no
        checkpoint covers it yet. Check it with :func:`proxy.audit.checkpoint.verify_proof`."""
        covering = self.covering(seq)
        if covering is None:
            return None
        rows = list(self.sealed_range(seq, covering.record_seq))
        if not rows or rows[0][0] != seq:
            return None
        return {
            "seq": seq,
            "links": [{"seq": s, "body": body, "hash": h} for s, body, h in rows],
            "checkpoint": asdict(covering),
        }

    def _check_checkpoints(
        self, hashes: dict[int, str], public_key: Ed25519PublicKey | None, chain: str | None
    ) -> ChainProblem | None:
        last_seq = max(hashes, default=0)
        for number, checkpoint in enumerate(self.checkpoints(), start=1):
            if public_key is not None and not signature_valid(checkpoint, public_key):
                return ChainProblem(
                    checkpoint.record_seq,
                    f"checkpoint {number} has no valid signature (forged or altered)",
                )
            chain = checkpoint.chain if chain is None else chain
            if checkpoint.chain != chain:
                return ChainProblem(
                    checkpoint.record_seq,
                    f"checkpoint {number} seals chain {checkpoint.chain!r}, not {chain!r}"
                    " (another chain's log in its place?)",
                )
            if checkpoint.record_seq > last_seq:
                return ChainProblem(
                    last_seq + 1,
                    f"missing: checkpoint {number} covers records up to {checkpoint.record_seq}"
                    f" but the log ends at {last_seq} (cut short)",
                )
            if hashes.get(checkpoint.record_seq) != checkpoint.record_hash:
                return ChainProblem(
                    checkpoint.record_seq,
                    f"does not match checkpoint {number} (log replaced or rewritten)",
                )
        return None

    def _nothing_proven(
        self, hashes: dict[int, str], public_key: Ed25519PublicKey | None, before: str | None
    ) -> ChainProblem | None:
        """With a key but no checkpoint, nothing ties the records to it: no pass, unless they
        are all younger than ``before`` (a writer's first, not signed yet: see
        :meth:`_unsealed`). A log with no record at all is a chain nothing was written to yet (a
        worker that served nothing): it passes, and the command line says it held nothing (one
        emptied looks the same: the archive tells them apart)."""
        if hashes and public_key is not None and before is None and not self.checkpoints():
            return ChainProblem(
                1,
                "no signed checkpoint: nothing ties these records to the key (a writer signs"
                " within its checkpoint interval; give that window to accept younger records)",
            )
        return None

    def _unsealed(self, before: str) -> ChainProblem | None:
        """The first record written before ``before`` that no checkpoint covers (its time
        column agrees with its body: checked first)."""
        covered = max((checkpoint.record_seq for checkpoint in self.checkpoints()), default=0)
        row = self._connection.execute(
            "SELECT seq, time FROM records WHERE seq > ? AND time < ? ORDER BY seq LIMIT 1",
            (covered, before),
        ).fetchone()
        if row is None:
            return None
        return ChainProblem(
            int(row[0]),
            f"not sealed: written at {row[1]}, yet no signed checkpoint covers it or any record"
            f" after {covered} (the log was cut and rewritten, or its writer was killed and has"
            " not started since)",
        )

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
        for clause, value in (
            ("dag = ?", flt.dag),
            ("event = ?", flt.event),
            ("request_id = ?", flt.request_id),
            ("verdict = ?", flt.verdict),
            # Neo4j's database names are case-insensitive (NEO4J is neo4j; ASCII only, as
            # NOCASE folds): the record keeps the name as the caller spelled it.
            ("database = ? COLLATE NOCASE", flt.database),
            ("time >= ?", flt.since),
            ("time < ?", flt.until),
        ):
            if value is not None:
                clauses.append(clause)
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
            # In Python, not with LIKE: SQLite's string functions stop at a NUL, so text after
            # one ("// \x00\nCREATE ...") would hide from every search. ``->`` hands over the
            # statement as JSON text, where a NUL is still the escape ``\u0000``.
            clauses.append("statement_contains(body -> '$.statement', ?)")
            values.append(flt.text.translate(_ASCII_LOWER))
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
        sql = "SELECT seq, body FROM records"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY seq DESC" if flt.newest_first else " ORDER BY seq"
        if flt.limit is not None:
            sql += " LIMIT ?"
            values.append(flt.limit)
        try:
            for seq, body in self._connection.execute(sql, values):
                yield self._document(seq, body)
        except sqlite3.OperationalError as exc:  # a filter's JSON function met an edited body
            if "malformed JSON" not in str(exc):
                raise
            raise DamagedLog(
                f"{self._path}: a record's body is not JSON (altered: `cyphergate audit verify`"
                " names the first altered record)"
            ) from None

    def _document(self, seq: object, body: object) -> dict[str, Any]:
        """A record's body as its JSON object; :class:`DamagedLog` if it is none."""
        try:
            document = json.loads(body)  # type: ignore[arg-type]
        except (TypeError, ValueError):  # not text, not UTF-8, not JSON
            document = None
        if not isinstance(document, dict):
            raise DamagedLog(
                f"{self._path}: record {seq} is not a JSON object (altered: `cyphergate audit"
                " verify` names the first altered record)"
            )
        return document

    def head(self) -> tuple[int, str] | None:
        """``(seq, hash)`` of the newest record; ``None`` for an empty log."""
        row = self._connection.execute(
            "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def unanswered(self, before: str, *, limit: int = 100) -> tuple[int, list[dict[str, Any]]]:
        """Decisions written ahead of execution (status still pending) before ``before`` whose
        request has no outcome record: how many, and the first ``limit`` of them. A statement
        may have run for each (a gateway killed mid-request, an outcome lost with its process),
        so a reviewer must see them; the chain being intact says nothing about them."""
        where = (
            " FROM records AS d WHERE d.event = 'decision' AND d.time < ?"
            # An edited body that is no JSON object is not looked into: verify names it.
            " AND CASE WHEN json_valid(d.body) AND json_type(d.body) = 'object'"
            " THEN json_extract(d.body, '$.status') IS NULL ELSE 0 END AND NOT EXISTS"
            " (SELECT 1 FROM records AS o WHERE o.request_id = d.request_id"
            " AND o.event = 'outcome')"
        )
        (count,) = self._connection.execute("SELECT count(*)" + where, (before,)).fetchone()
        rows = self._connection.execute(
            "SELECT d.seq, d.body" + where + " ORDER BY d.seq LIMIT ?", (before, limit)
        )
        return int(count), [self._document(seq, body) for seq, body in rows]

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


# LIKE's rule, kept for the text filter: ASCII letters match either case, other letters only
# their own.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _check_readable(path: Path) -> None:
    """Refuse in words naming ``path`` no file, a folder, a file it may not read (SQLite: "disk
    I/O error"). Never by opening it: closing a descriptor drops the process's POSIX locks on
    the file, SQLite's too, and the gateway reads its own live log; another process closing
    then deleted the WAL the gateway still wrote (tests/audit/test_reader.py)."""
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "no audit log there", str(path))
    if path.is_dir():
        raise NotAnAuditLog(f"{path} is a folder, not an audit log file")
    if not os.access(path, os.R_OK):
        raise NotAnAuditLog(f"{path} cannot be read: permission denied")


def _statement_contains(statement_json: str | None, lowered: str) -> bool:
    """Whether a record's statement (JSON text: its NULs still escaped) holds ``lowered``."""
    if statement_json is None:
        return False
    statement = json.loads(statement_json)
    return isinstance(statement, str) and lowered in statement.translate(_ASCII_LOWER)


def _columns_of(document: dict[str, Any]) -> tuple[Any, ...]:
    principal = section(document.get("principal"))
    decision = section(document.get("decision"))
    verdict = verdict_of(decision, event=document.get("event"))
    return (
        document.get("time"),
        document.get("event"),
        document.get("request_id"),
        principal.get("dag"),
        document.get("database"),
        verdict,
    )
