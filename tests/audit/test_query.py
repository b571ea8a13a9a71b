"""Reviewer queries: filters, CSV and a live tail, through the CLI on a real log file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import SQLiteAuditLog
from tests.audit.test_record import event


def events() -> list[AuditEvent]:
    allowed = event(1)
    denied = replace(
        event(2),
        principal={
            "method": "aws_iam",
            "issuer": "aws:1",
            "subject": "arn:aws:iam::1:role/r",
            "dag": "etl",
        },
        statement="CREATE (:Secret_100%)",
        decision={"allow": False, "reasons": ["write_not_granted"], "decision_id": "d2"},
        status=403,
    )
    failed = replace(
        event(3),
        decision=None,
        principal=None,
        status=401,
        error={"code": "Neo.ClientError.Security.Unauthorized", "reason": "token_expired"},
    )
    return [allowed, denied, failed]


def write(path: Path, batch: list[AuditEvent]) -> None:
    async def go() -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            for item in batch:
                await log.append(item)
        finally:
            await log.close()

    asyncio.run(go())


def query(path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "proxy", "audit", "query", "--log", str(path), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def seqs(output: str) -> list[int]:
    return [json.loads(line)["seq"] for line in output.splitlines()]


def test_filters(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, events())
    assert seqs(query(path, "--format", "json")) == [1, 2, 3]
    assert seqs(query(path, "--format", "json", "--decision", "deny")) == [2, 3]
    assert seqs(query(path, "--format", "json", "--reason", "write_not_granted")) == [2]
    assert seqs(query(path, "--format", "json", "--reason", "token_expired")) == [3]
    assert seqs(query(path, "--format", "json", "--principal", "arn:aws:iam::1:role/r")) == [2]
    assert seqs(query(path, "--format", "json", "--request-id", "r2")) == [2]
    # The text filter is literal: % and _ match only themselves.
    assert seqs(query(path, "--format", "json", "--text", "Secret_100%")) == [2]
    assert seqs(query(path, "--format", "json", "--text", "Secret%100")) == []


def test_text_after_a_nul_is_found(tmp_path: Path) -> None:
    """Found by review: SQLite's string functions stop at a NUL, so a statement sent as
    ``WITH 1 AS a // \\x00\\nCREATE (:Label)`` ran and no text search could find its CREATE."""
    path = tmp_path / "audit.sqlite3"
    hidden = "WITH 1 AS a // \x00\nCREATE (:Hidden_Label)"
    write(path, [event(1), replace(event(2), statement=hidden), event(3)])
    assert seqs(query(path, "--format", "json", "--text", "Hidden_Label")) == [2]
    # As LIKE matched before: ASCII letters in either case, and a NUL in the search itself.
    assert seqs(query(path, "--format", "json", "--text", "create (:hidden")) == [2]
    with AuditReader(path) as reader:
        for text, found in (("// \x00\nCREATE", [2]), ("\x00x", []), ("RETURN", [1, 3])):
            assert [r["seq"] for r in reader.query(RecordFilter(text=text))] == found, text


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, events())
    rows = list(csv.DictReader(io.StringIO(query(path, "--format", "csv"))))
    assert [row["seq"] for row in rows] == ["1", "2", "3"]
    assert rows[1]["reasons"] == "write_not_granted" and rows[1]["decision"] == "deny"


def test_follow_prints_new_records(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, events()[:1])
    tail = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "proxy",
            "audit",
            "query",
            "--log",
            str(path),
            "--format",
            "json",
            "--follow",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert tail.stdout is not None
        assert json.loads(tail.stdout.readline())["seq"] == 1
        write(path, events()[1:2])
        started = time.monotonic()
        line = tail.stdout.readline()
        assert json.loads(line)["seq"] == 2
        assert time.monotonic() - started < 10
    finally:
        tail.terminate()
        tail.communicate(timeout=10)  # also closes its stdout


def test_several_replicas_are_queried_and_verified_together(tmp_path: Path) -> None:
    first, second = tmp_path / "replica-1.sqlite3", tmp_path / "replica-2.sqlite3"
    write(first, events()[:2])
    write(second, events()[2:])
    both = ["--log", str(first), "--log", str(second)]
    merged = [json.loads(line) for line in query(first, *both[2:], "--format", "json").splitlines()]
    assert [(Path(r["log"]).name, r["seq"]) for r in merged] == [
        ("replica-1.sqlite3", 1),
        ("replica-1.sqlite3", 2),
        ("replica-2.sqlite3", 1),
    ]
    verify = [sys.executable, "-m", "proxy", "audit", "verify", *both]
    assert subprocess.run(verify, capture_output=True, text=True, check=False).returncode == 0
    with sqlite3.connect(second) as db:
        db.execute("DROP TRIGGER records_no_update")
        db.execute("UPDATE records SET body = replace(body, 'RETURN', 'DELETE')")
    failed = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert failed.returncode == 1
    assert "OK: 2 records" in failed.stdout and "FAILED: record 1" in failed.stdout
    assert str(second) in failed.stdout


def test_a_log_that_cannot_be_read_hides_no_other_from_verify(tmp_path: Path) -> None:
    """From the faults review: verify stopped at the first file that was no log (exit 2) and
    never checked the chains after it."""
    good, missing, garbage = (tmp_path / n for n in ("good.sqlite3", "gone.sqlite3", "x.sqlite3"))
    write(good, events())
    garbage.write_bytes(b"not a database at all")
    logs = ["--log", str(missing), "--log", str(garbage), "--log", str(good)]
    verify = [sys.executable, "-m", "proxy", "audit", "verify", *logs]
    text = subprocess.run(verify, capture_output=True, text=True, check=False)
    assert text.returncode == 2, text.stderr
    assert "OK: 3 records" in text.stdout
    problems = text.stderr.splitlines()
    assert len(problems) == 2 and all(p.startswith("cyphergate: ") for p in problems)
    assert str(missing) in problems[0] and str(garbage) in problems[1]
    as_json = subprocess.run([*verify, "--format", "json"], capture_output=True, text=True)
    assert as_json.returncode == 2
    (report,) = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert Path(report["log"]).name == "good.sqlite3" and report["ok"]


def test_newest_first_pages_and_denials_per_dag(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    write(path, events())
    with AuditReader(path) as reader:
        newest = [r["seq"] for r in reader.query(RecordFilter(newest_first=True, limit=2))]
        assert newest == [3, 2]
        older = [r["seq"] for r in reader.query(RecordFilter(newest_first=True, before_seq=2))]
        assert older == [1]
        head = reader.head()
        assert head is not None and head[0] == 3
        # Two refusals: the policy's (DAG etl) and the failed authentication (no DAG).
        assert reader.denials_by_dag("2026-01-01T00") == {
            "etl": {"2026-01-01T00": 1},
            None: {"2026-01-01T00": 1},
        }
        assert reader.denials_by_dag("2026-01-02T00") == {}


HOSTILE = "RETURN '\x1b[2J\x1b]0;owned\x07\u202eevil\x9b31m' AS x"


def test_control_characters_are_escaped_in_every_printed_format(tmp_path: Path) -> None:
    """A statement is whatever a caller sent, from any identity: the reviewer's terminal must
    never receive its escape sequences, in the table, the CSV or a followed tail."""
    path = tmp_path / "audit.sqlite3"
    hostile = replace(
        event(1),
        statement=HOSTILE,
        principal={"method": "oidc", "issuer": "i", "subject": "s", "dag": "d\x1b[8m"},
        decision={"allow": False, "reasons": ["r\x1b[1m"], "decision_id": "d1"},
    )
    write(path, [hostile])
    outputs = [query(path, "--format", fmt) for fmt in ("table", "csv", "json")]
    with subprocess.Popen(
        [sys.executable, "-m", "proxy", "audit", "query", "--log", str(path), "--follow"],
        stdout=subprocess.PIPE,
        text=True,
    ) as follow:
        try:
            assert follow.stdout is not None
            header, first = follow.stdout.readline(), follow.stdout.readline()
            write(path, [replace(hostile, request_id="r2")])  # printed by the tail
            followed = follow.stdout.readline()
        finally:
            follow.terminate()
    for output in [*outputs, header + first + followed]:
        assert not any(c in output for c in "\x1b\x07\x9b\u202e"), output
    table, csv_text, _ = outputs
    assert "\\x1b[2J\\x1b]0;owned\\x07\\u202eevil\\x9b31m" in csv_text
    assert "d\\x1b[8m" in table and "r\\x1b[1m" in table
    assert "\\x1b[2J" in followed


def test_a_cell_a_spreadsheet_would_run_is_exported_as_text(tmp_path: Path) -> None:
    """Found by review: a database name is recorded as sent, even by a caller with no
    credential, and ``=1+2`` in the CSV export ran as a formula when a reviewer opened it."""
    path = tmp_path / "audit.sqlite3"
    write(
        path,
        [
            replace(event(1), database="=1+2", statement="@SUM(1)"),
            replace(event(2), database="+cmd|' /C calc'!A0", statement="-2+3"),
        ],
    )
    rows = list(csv.DictReader(io.StringIO(query(path, "--format", "csv"))))
    assert [(r["database"], r["statement"]) for r in rows] == [
        ("'=1+2", "'@SUM(1)"),
        ("'+cmd|' /C calc'!A0", "'-2+3"),
    ]
    assert all(r["reasons"] == "-" or not r["reasons"].startswith("'") for r in rows)
