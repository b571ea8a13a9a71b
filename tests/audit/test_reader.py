"""Opening a log: the file named, read-only, whatever its path holds; a path that names no
readable log is refused in one sentence."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from proxy.audit.reader import AuditReader, NotAnAuditLog, RecordFilter
from tests.audit.test_query import write
from tests.audit.test_record import event


@pytest.mark.parametrize(
    "name",
    ["audit?mode=rwc.sqlite3", "audit#1.sqlite3", "audit%41.sqlite3", "audit%.sqlite3", "a log"],
    ids=["question-mark", "hash", "percent-escape", "percent", "space"],
)
def test_a_path_with_uri_characters_opens_that_file_read_only(tmp_path: Path, name: str) -> None:
    """SQLite opens the reader's file by URI, where ``?``, ``#`` and ``%`` mean something:
    left as they are, the reader opened (and created) another file, or none."""
    log = tmp_path / name
    write(log, [event(1), event(2)])
    # What the unescaped name decoded to (``%41`` is ``A``): it must not be read instead.
    write(tmp_path / "auditA.sqlite3", [event(1)])
    before = {p.name for p in tmp_path.iterdir()}
    with AuditReader(log) as reader:
        assert reader.count() == 2
        assert [r["seq"] for r in reader.query(RecordFilter())] == [1, 2]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader._connection.execute("CREATE TABLE t (x)")
    # No file was made by opening (SQLite's own -wal and -shm beside the log aside).
    made = {p.name for p in tmp_path.iterdir()} - before
    assert made <= {f"{name}-wal", f"{name}-shm"}


def test_a_log_the_reader_may_not_read_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As root, chmod 000 does not stop reads (tests/test_cli.py skips that case there): the
    operating system's refusal is played here by ``os.access``, the reader's first look."""
    log = tmp_path / "audit.sqlite3"
    write(log, [event(1)])
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != log)
    with pytest.raises(NotAnAuditLog) as refused:
        AuditReader(log)
    assert str(refused.value) == f"{log} cannot be read: permission denied"


_READ_ELSEWHERE = (
    "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM records')"
)


def test_reading_the_live_log_in_its_writers_process_loses_no_record(tmp_path: Path) -> None:
    """The gateway reads its own live log (the reviewers' API). The reader once looked at the
    file by opening and closing a descriptor of it, which drops every POSIX lock the process
    holds on the file, SQLite's included: the next connection of another process to close took
    itself for the last one, checkpointed and deleted the write-ahead log the writer still
    appended to, and what was written after could no longer be read (the whole suite lost the
    session gateway's records so)."""
    log = tmp_path / "audit.sqlite3"
    write(log, [event(1)])
    writer = sqlite3.connect(log, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("CREATE TABLE later (x INTEGER)")
    with AuditReader(log) as reader:  # in the writer's process
        assert reader.count() == 1
    # Opened, read and closed by another process (a reviewer's tool, a backup).
    subprocess.run([sys.executable, "-c", _READ_ELSEWHERE, str(log)], check=True)
    writer.execute("INSERT INTO later VALUES (1)")
    fresh = sqlite3.connect(f"{log.as_uri()}?mode=ro", uri=True)
    try:
        assert fresh.execute("SELECT count(*) FROM later").fetchone() == (1,)
    finally:
        fresh.close()
        writer.close()
