"""Exports for a SIEM, through the CLI, on a real log file."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from proxy.audit.export import PARQUET_COLUMNS
from proxy.audit.reader import AuditReader
from proxy.cli import main
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


def beside(log: Path) -> list[str]:
    """The files beside ``log`` but its own (SQLite's -wal and -shm, the writer's lock)."""
    return sorted(p.name for p in log.parent.iterdir() if not p.name.startswith(log.name))


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


def test_parquet_without_pyarrow_says_how_to_get_it_and_keeps_the_old_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    out = tmp_path / "audit.parquet"
    out.write_bytes(b"last week's export")
    for name in ("pyarrow", "pyarrow.parquet"):  # a None there: an import fails, as uninstalled
        monkeypatch.setitem(sys.modules, name, None)
    status = main(["audit", "export", "--log", str(log), "--out", str(out), "--format", "parquet"])
    captured = capsys.readouterr()
    assert status == 2
    assert captured.out == "" and "Traceback" not in captured.err
    assert captured.err == (
        "cyphergate: Parquet export needs pyarrow: pip install 'cyphergate[parquet]'"
        " (or --format jsonl)\n"
    )
    assert out.read_bytes() == b"last week's export"
    assert beside(log) == ["audit.parquet"]


def test_an_out_that_cannot_be_written_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    for out, why in ((tmp_path, "is a folder"), (tmp_path / "no" / "x.jsonl", "No such file")):
        for kind in ("jsonl", "parquet"):
            command = ["audit", "export", "--log", str(log), "--out", str(out)]
            status = main([*command, "--format", kind])
            error = capsys.readouterr().err
            assert status == 2
            assert error.startswith(f"cyphergate: cannot write {out}: ") and why in error
            assert len(error.splitlines()) == 1


def test_an_export_stopped_half_way_leaves_the_old_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    out = tmp_path / "audit.jsonl"
    out.write_text("last week's export\n")
    query = AuditReader.query

    def interrupted(self: AuditReader, flt: object) -> object:
        yield from list(query(self, flt))[:1]  # type: ignore[arg-type]
        raise KeyboardInterrupt  # Ctrl-C, one record in

    monkeypatch.setattr(AuditReader, "query", interrupted)
    assert main(["audit", "export", "--log", str(log), "--out", str(out)]) == 130
    assert out.read_text() == "last week's export\n"
    assert beside(log) == ["audit.jsonl"]


@pytest.mark.parametrize("name", ["audit.sqlite3", "audit.sqlite3-wal", "link", "other.sqlite3"])
def test_an_out_naming_the_log_or_another_database_is_refused_and_left_as_it_was(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """Found by review: the export replaced whatever ``--out`` named once it was written, so
    ``--out`` naming the log being exported (directly, through a link or its WAL) or another
    replica's log replaced that database with JSON Lines: the audit log was gone."""
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    (tmp_path / "link").symlink_to(log)
    write(tmp_path / "other.sqlite3", events())
    out = tmp_path / name
    kept = {p: p.read_bytes() for p in (log, tmp_path / "other.sqlite3")}
    assert main(["audit", "export", "--log", str(log), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"cyphergate: cannot write {out}: it is ")
    assert len(error.splitlines()) == 1
    assert {p: p.read_bytes() for p in kept} == kept
    with AuditReader(log) as reader:
        assert reader.count() == len(events())


def test_a_pipe_or_a_link_is_written_through_never_replaced(tmp_path: Path) -> None:
    """Found by review: a named pipe, a device (``/dev/null``, ``/dev/stdout``) or a link given
    as ``--out`` was replaced by a regular file (as root, ``--out /dev/null`` replaced the
    machine's /dev/null); a link was replaced instead of what it names."""
    log = tmp_path / "audit.sqlite3"
    write(log, events())
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reading = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reading.start()
    assert export(log, pipe) == ""  # the summary is not written where the records go
    reading.join(10)
    assert stat.S_ISFIFO(pipe.lstat().st_mode)
    assert len(got[0].splitlines()) == len(events())
    target = tmp_path / "exports" / "audit.jsonl"
    target.parent.mkdir()
    target.write_text("last week's export\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    export(log, link)
    assert link.is_symlink()
    assert len(target.read_text().splitlines()) == len(events())
