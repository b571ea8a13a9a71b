"""Opening a log: the file named, read-only, whatever its path holds; a path that names no
readable log is refused in one sentence."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

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
    operating system's refusal is played here by ``Path.open``, the reader's first look."""
    log = tmp_path / "audit.sqlite3"
    write(log, [event(1)])
    opened = Path.open

    def refusing(self: Path, *args: Any, **kwargs: Any) -> Any:
        if self == log:
            raise PermissionError(13, "Permission denied", str(self))
        return opened(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refusing)
    with pytest.raises(NotAnAuditLog) as refused:
        AuditReader(log)
    assert str(refused.value) == f"{log} cannot be read: permission denied"
