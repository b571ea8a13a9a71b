"""The SQLite log: group commit, append-only triggers, fail-closed writes, column checks."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from proxy.audit.chainfile import ROWS_PER_INSERT, ChainFile
from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.errors import AuditUnavailable
from tests.audit.test_record import event


def write(path: Path, count: int) -> list[int]:
    async def go() -> list[int]:
        log = SQLiteAuditLog(path, max_batch=16)
        await log.open()
        try:
            receipts = await asyncio.gather(*(log.append(event(n % 60)) for n in range(count)))
        finally:
            await log.close()
        return [r.seq for r in receipts]

    return asyncio.run(go())


def test_concurrent_appends_form_one_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    assert sorted(write(path, 100)) == list(range(1, 101))
    assert sorted(write(path, 10)) == list(range(101, 111))  # reopening continues the chain
    with AuditReader(path) as reader:
        steps = list(reader.verify())
        assert steps == list(range(1, 111))
        assert len(list(reader.query(RecordFilter(dag="d", limit=5)))) == 5


def test_updates_and_deletes_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, 3)
    with sqlite3.connect(path) as db:
        for sql in ("UPDATE records SET dag = 'x'", "DELETE FROM records WHERE seq = 1"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(sql)


def test_edited_query_column_fails_verify(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, 3)
    with sqlite3.connect(path) as db:
        db.execute("DROP TRIGGER records_no_update")
        db.execute("UPDATE records SET dag = 'someone_else' WHERE seq = 2")
    with AuditReader(path) as reader:
        last = list(reader.verify())[-1]
    assert isinstance(last, ChainProblem) and last.seq == 2 and "columns" in last.why


def test_unwritable_log_raises_audit_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"

    async def go() -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            await log.append(event(1))
            # Another process holds the write lock: the writer cannot commit.
            blocker = sqlite3.connect(path, timeout=0)
            blocker.execute("BEGIN EXCLUSIVE")
            try:
                with pytest.raises(AuditUnavailable):
                    await log.append(event(2))
            finally:
                blocker.rollback()
                blocker.close()
            receipt = await log.append(event(3))  # recovers, and the chain stays whole
            assert receipt.seq == 2
        finally:
            await log.close()

    asyncio.run(go())
    with AuditReader(path) as reader:
        assert list(reader.verify()) == [1, 2]


@pytest.mark.parametrize("count", [1, 256, 257, 700])
def test_a_batch_of_any_size_is_one_commit_that_verifies(tmp_path: Path, count: int) -> None:
    """A batch is one transaction, however large audit.max_batch lets it grow."""
    path = tmp_path / "audit.sqlite3"
    chain = ChainFile(path)
    chain.open()
    try:
        receipts = chain.write([event(n % 60) for n in range(count)])
    finally:
        chain.close()
    assert [r.seq for r in receipts] == list(range(1, count + 1))
    with AuditReader(path) as reader:
        assert list(reader.verify()) == list(range(1, count + 1))


@pytest.mark.parametrize(
    ("count", "clash"),
    [(5, 6), (ROWS_PER_INSERT, ROWS_PER_INSERT + 1), (400, 301)],
    ids=["one-statement", "one-full-statement", "several-statements"],
)
def test_a_batch_refused_in_its_last_part_writes_nothing(
    tmp_path: Path, count: int, clash: int
) -> None:
    """However the batch is cut into INSERT statements, a row refused anywhere (here a seq the
    writer does not know is taken) leaves none of the batch behind and the head where it was."""
    path = tmp_path / "audit.sqlite3"
    chain = ChainFile(path)
    chain.open()
    chain.write([event(1)])
    with sqlite3.connect(path) as db:  # a record the writer does not know of, at seq ``clash``
        db.execute(
            "INSERT INTO records SELECT ?, time, event, request_id, dag, database,"
            " verdict, body, hash FROM records WHERE seq = 1",
            (clash,),
        )
    try:
        with pytest.raises(sqlite3.IntegrityError):
            chain.write([event(n % 60) for n in range(count)])  # its last or a later row clashes
        assert chain.write([event(2)])[0].seq == 2  # the head did not move
    finally:
        chain.close()
    with sqlite3.connect(path) as db:
        seqs = [row[0] for row in db.execute("SELECT seq FROM records ORDER BY seq")]
    assert seqs == [1, 2, clash]
