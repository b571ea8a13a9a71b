"""Exports for a SIEM: JSON Lines (the records as documented) or Parquet (flattened columns).

Parquet needs the optional ``pyarrow`` (``pip install 'cyphergate[parquet]'``). Values of
parameters are never in the log, so never in an export either.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import flat_record

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


def export(
    reader: AuditReader,
    flt: RecordFilter,
    out: Path,
    *,
    kind: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write the matching records to ``out``; returns how many were written."""
    records = _counted(reader.query(flt), progress)
    if kind == "jsonl":
        count = 0
        with out.open("w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
                count += 1
        return count
    if kind == "parquet":
        return _parquet(records, out)
    raise ValueError(f"unknown export format {kind!r}")


def flatten(record: dict[str, Any]) -> dict[str, Any]:
    """One record as the Parquet columns (dag, verdict and reasons as queries see them)."""
    flat = flat_record(record)
    principal = record.get("principal") or {}
    error = record.get("error") or {}
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


def _parquet(records: Iterable[dict[str, Any]], out: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RuntimeError(
            "Parquet export needs pyarrow: pip install 'cyphergate[parquet]'"
        ) from exc
    rows = [flatten(record) for record in records]
    table = pa.Table.from_pylist(rows) if rows else pa.table({c: [] for c in PARQUET_COLUMNS})
    pq.write_table(table, out)
    return len(rows)


def _counted(
    records: Iterable[dict[str, Any]], progress: Callable[[int], None] | None
) -> Iterable[dict[str, Any]]:
    for count, record in enumerate(records, start=1):
        if progress is not None and count % 100_000 == 0:
            progress(count)
        yield record
