"""Exports for a SIEM: JSON Lines (the records as documented) or Parquet (flattened columns).

Parquet needs the optional ``pyarrow`` (``pip install 'cyphergate[parquet]'``). Values of
parameters are never in the log, so never in an export either.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import flat_record, section
from proxy.locks import owned_files

PARQUET_COLUMNS = (
    "seq",
    "time",
    "event",
    "request_id",
    "method",
    "issuer",
    "subject",
    "dag",
    "task",
    "run",
    "database",
    "verdict",
    "reasons",
    "status",
    "error_code",
    "error_reason",
    "query_type",
    "statement",
    "statement_sha256",
    "rows",
    "latency_us",
    "record",
)


class ExportFailed(ValueError):
    """An export that cannot be made (its format's library missing, ``out`` not writable); the
    message names what, and the file ``out`` was before is left as it was."""


def export(
    reader: AuditReader,
    flt: RecordFilter,
    out: Path,
    *,
    kind: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the matching records to ``out``; returns how many were written.

    The records go to a file beside ``out`` that replaces it only once complete: an export
    that fails or is stopped half-way leaves the last good one in place, never a truncated one.
    A link is followed (what it names is replaced, the link stays); a device or a pipe
    (``/dev/stdout``) is written as it goes, never replaced by a file; the log being read and
    any SQLite database are refused, as a mistaken ``--out`` would destroy them.
    """
    if kind not in ("jsonl", "parquet"):
        raise ValueError(f"unknown export format {kind!r}")
    write = _parquet_writer() if kind == "parquet" else _jsonl
    if out.is_dir():
        raise ExportFailed(f"cannot write {out}: it is a folder; --out names the file to write")
    records = _counted(reader.query(flt), progress)
    if out.exists() and not out.is_file():  # a stream, as its link names it: nothing to keep
        try:
            return write(records, out)
        except OSError as exc:
            raise ExportFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    target = out.resolve()
    _refuse_to_replace(out, target, reader.path)
    # A fresh name, made here and now (O_EXCL), with the permissions a plain open would give.
    partial = target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial")
    try:
        os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    except OSError as exc:
        raise ExportFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        count = write(records, partial)
        partial.replace(target)
    except OSError as exc:  # the disk filled, say: the last good export stays
        partial.unlink(missing_ok=True)
        raise ExportFailed(f"cannot write {out}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return count


def _refuse_to_replace(out: Path, target: Path, log: Path) -> None:
    """:class:`ExportFailed` if ``target`` (``out`` resolved) is the log being read, one of
    its companion files, or an SQLite database (another log, say): replacing it with the
    export would destroy what it holds."""
    for companion in owned_files(log):
        if target == companion or (
            target.exists() and companion.exists() and os.path.samefile(target, companion)
        ):
            raise ExportFailed(f"cannot write {out}: it is the audit log being exported")
    if target.is_file():
        with contextlib.suppress(OSError), target.open("rb") as handle:
            if handle.read(16) == b"SQLite format 3\x00":
                raise ExportFailed(
                    f"cannot write {out}: it is an SQLite database (an audit log?), which the"
                    " export would replace; name another file"
                )


def _jsonl(records: Iterable[dict[str, Any]], out: Path) -> int:
    count = 0
    with out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record as the Parquet columns (dag, verdict and reasons as queries see them)."""
    flat = flat_record(record)
    principal = section(record.get("principal"))
    error = section(record.get("error"))
    return {
        "seq": record["seq"],
        "time": record["time"],
        "event": record["event"],
        "request_id": record["request_id"],
        "method": principal.get("method"),
        "issuer": principal.get("issuer"),
        "subject": principal.get("subject"),
        "dag": flat["dag"],
        "task": principal.get("task"),
        "run": principal.get("run"),
        "database": record.get("database"),
        "verdict": flat["decision"],
        "reasons": list(flat["reasons"]),
        "status": record.get("status"),
        "error_code": error.get("code"),
        "error_reason": error.get("reason"),
        "query_type": record.get("query_type"),
        "statement": record.get("statement"),
        "statement_sha256": record.get("statement_sha256"),
        "rows": record.get("rows"),
        "latency_us": record.get("latency_us"),
        "record": json.dumps(record, ensure_ascii=False),
    }


def _parquet_writer() -> Callable[[Iterable[dict[str, Any]], Path], int]:
    """The Parquet writer, or :class:`ExportFailed` before anything is read or written."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ExportFailed(
            "Parquet export needs pyarrow: pip install 'cyphergate[parquet]' (or --format jsonl)"
        ) from None

    def write(records: Iterable[dict[str, Any]], out: Path) -> int:
        rows = [flatten(record) for record in records]
        table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in PARQUET_COLUMNS})
        pq.write_table(table, out)
        return len(rows)

    return write


def _counted(
    records: Iterable[dict[str, Any]], progress: Callable[[int], None] | None
) -> Iterable[dict[str, Any]]:
    for count, record in enumerate(records, start=1):
        if progress is not None and count % 100_000 == 0:
            progress(count)
        yield record
