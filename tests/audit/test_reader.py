"""Opening a log: the file named, read-only, whatever its path holds; a path that names no
readable log is refused in one sentence."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from proxy.audit.reader import AuditReader, RecordFilter
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
