"""Reviewer queries: filters, CSV and a live tail, through the CLI on a real log file."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

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
    # The text filter is literal: % and _ match only themselves.
    assert seqs(query(path, "--format", "json", "--text", "Secret_100%")) == [2]
    assert seqs(query(path, "--format", "json", "--text", "Secret%100")) == []


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
