"""Exports for a SIEM, through the CLI, on a real log file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from proxy.audit.export import PARQUET_COLUMNS
from tests.audit.test_query import events, write


def export(log: Path, out: Path, *args: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "proxy",
            "audit",
            "export",
            "--log",
            str(log),
            "--out",
            str(out),
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_json_lines(tmp_path: Path) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    out = tmp_path / "audit.jsonl"
    assert "exported 3 records" in export(log, out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in records] == [1, 2, 3]
    assert records[1]["decision"]["reasons"] == ["write_not_granted"]


def test_parquet(tmp_path: Path) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    out = tmp_path / "audit.parquet"
    assert "exported 1 record to" in export(log, out, "--format", "parquet", "--dag", "etl")
    table = pq.read_table(out)
    assert tuple(table.column_names) == PARQUET_COLUMNS
    rows = table.to_pylist()
    assert [r["seq"] for r in rows] == [2]
    (denied,) = rows
    assert denied["verdict"] == "deny" and denied["reasons"] == ["write_not_granted"]
    assert json.loads(denied["record"])["seq"] == 2
