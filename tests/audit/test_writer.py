"""The audit writer supervises itself: a failed batch refuses its requests and the writer goes on;
``append`` has a deadline; the loop never leaves a caller waiting; outcomes the log cannot take
when they come are written late, marked so, once it can."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import AuditEvent
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.cli import main
from proxy.errors import AuditUnavailable
from proxy.faults import CrashPoint
from proxy.metrics import Metrics
from tests.audit.test_record import event


class Injected:
    """Raises ``error`` at the audit writer's next ``times`` writes after ``skip`` more; blocks
    while ``hold`` is clear (a hung disk)."""

    def __init__(self) -> None:
        self.error: BaseException | None = None
        self.skip = 0
        self.times = 0
        self.hold = threading.Event()
        self.hold.set()

    def reached(self, point: CrashPoint) -> None:
        assert point == "audit_batch"
        self.hold.wait(30)
        if self.skip > 0:
            self.skip -= 1
        elif self.times > 0 and self.error is not None:
            self.times -= 1
            raise self.error


def outcome(n: int) -> AuditEvent:
    return dataclasses.replace(event(n), event="outcome", statement=None, status=202)


def records(path: Path) -> list[dict[str, object]]:
    with AuditReader(path) as reader:
        assert all(isinstance(step, int) for step in reader.verify()), "the chain must verify"
        return list(reader.query(RecordFilter()))


async def settled(log: SQLiteAuditLog) -> str | None:
    """The log's readiness once it stops changing (what it kept written), within 5 s."""
    state: str | None = "unavailable"
    for _ in range(100):
        try:
            state = await log.check_ready()
        except AuditUnavailable:
            state = "unavailable"
        if state is None:
            break
        await asyncio.sleep(0.05)
    return state


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_an_unexpected_exception_fails_its_batch_and_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    faults, metrics = Injected(), Metrics()

    async def go() -> None:
        log = SQLiteAuditLog(path, faults=faults, metrics=metrics)
        await log.open()
        try:
            await log.append(event(1))
            faults.error, faults.times = KeyError("a bug in the writer"), 1
            with pytest.raises(AuditUnavailable) as refused:
                await log.append(event(2))
            assert refused.value.reason == "audit_writer_error:KeyError"
            assert refused.value.status == 503
            # The writer reopened the file and goes on, continuing the chain from its head.
            assert (await log.append(event(3))).seq == 2
            await log.check_alive()
            assert await log.check_ready() is None
        finally:
            await log.close()

    asyncio.run(go())
    assert [r["request_id"] for r in records(path)] == ["r1", "r3"]
    assert metric(metrics, "cyphergate_audit_writer_errors_total", cause="KeyError") == 1


def test_appends_made_together_share_a_commit_and_the_metrics_count_both(
    tmp_path: Path,
) -> None:
    """Group commit, seen from outside: appends queued while a commit is under way are written
    by the next one together, and /metrics counts records and commits (their ratio is what one
    sync to disk serves)."""
    path = tmp_path / "audit.sqlite3"
    faults, metrics = Injected(), Metrics()

    async def go() -> None:
        async with SQLiteAuditLog(path, faults=faults, metrics=metrics) as log:
            await log.append(event(0))  # a commit of one
            faults.hold.clear()  # the next commit waits while 20 more appends queue behind it
            first = asyncio.ensure_future(log.append(event(1)))
            await asyncio.sleep(0.1)
            rest = [asyncio.ensure_future(log.append(event(n))) for n in range(2, 22)]
            await asyncio.sleep(0.1)
            faults.hold.set()
            receipts = await asyncio.gather(first, *rest)
        assert [r.seq for r in receipts] == list(range(2, 23))

    asyncio.run(go())
    assert metric(metrics, "cyphergate_audit_records_total") == 22
    assert metric(metrics, "cyphergate_audit_commits_total") == 3  # 1, then 1, then 20


def test_append_has_a_deadline_and_a_decision_written_after_it_gets_its_outcome(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    faults = Injected()

    async def go() -> None:
        log = SQLiteAuditLog(path, faults=faults, append_timeout_s=0.3, retry_interval_s=0.05)
        await log.open()
        try:
            faults.hold.clear()  # the disk hangs while the decision is being written
            with pytest.raises(AuditUnavailable) as refused:
                await log.append(event(1))
            assert refused.value.reason == "audit_append_timeout"
            faults.hold.set()
            await log.append(event(2))
            assert await settled(log) is None
        finally:
            await log.close()

    asyncio.run(go())
    found = [(r["request_id"], r["event"], r["status"], r.get("late")) for r in records(path)]
    # The decision reached the disk though its caller was told 503: its outcome says so.
    assert found[0] == ("r1", "decision", None, None)
    assert ("r1", "outcome", 503, True) in found
    assert ("r2", "decision", None, None) in found


def test_an_append_whose_caller_gave_up_before_the_writer_took_it_is_not_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit.sqlite3"
    faults = Injected()

    async def go() -> None:
        log = SQLiteAuditLog(path, faults=faults, append_timeout_s=0.3)
        await log.open()
        try:
            faults.hold.clear()
            first = asyncio.ensure_future(log.append(event(1)))  # taken, then hung
            await asyncio.sleep(0.1)
            with pytest.raises(AuditUnavailable):
                await log.append(event(2))  # queued behind it, gives up
            faults.hold.set()
            with pytest.raises(AuditUnavailable):
                await first
            await log.append(event(3))
        finally:
            await log.close()

    asyncio.run(go())
    assert "r2" not in {r["request_id"] for r in records(path)}


def test_when_the_loop_ends_no_caller_is_left_waiting(tmp_path: Path) -> None:
    faults = Injected()

    async def go() -> None:
        log = SQLiteAuditLog(tmp_path / "audit.sqlite3", faults=faults, append_timeout_s=30)
        await log.open()
        faults.hold.clear()
        waiting = [asyncio.ensure_future(log.append(event(n))) for n in range(5)]
        after = asyncio.ensure_future(log.append_after(outcome(9)))
        await asyncio.sleep(0.1)
        writer = log._writer  # the loop ends as a bug or a cancellation would end it
        assert writer is not None
        writer.cancel()
        results = await asyncio.wait_for(
            asyncio.gather(*waiting, return_exceptions=True), timeout=5
        )
        assert all(isinstance(r, AuditUnavailable) for r in results), results
        assert await asyncio.wait_for(after, timeout=5) is None  # kept, never raised
        with pytest.raises(AuditUnavailable, match="audit log is unavailable"):
            await log.check_alive()
        with pytest.raises(AuditUnavailable):
            await log.append(event(6))
        faults.hold.set()
        await asyncio.wait_for(log.close(), timeout=10)  # stops, though its writer is gone

    asyncio.run(go())


def test_outcomes_the_log_refuses_are_written_late_once_it_takes_writes(tmp_path: Path) -> None:
    path = tmp_path / "audit.sqlite3"
    faults, metrics = Injected(), Metrics()

    async def go() -> None:
        log = SQLiteAuditLog(path, faults=faults, metrics=metrics, retry_interval_s=0.05)
        await log.open()
        try:
            await log.append(event(1))
            # The disk is full for a while: decisions are refused, outcomes kept.
            faults.error = sqlite3.OperationalError("database or disk is full")
            faults.times = 10**6
            assert await log.append_after(outcome(1)) is None
            with pytest.raises(AuditUnavailable, match="unavailable"):
                await log.append(event(2))
            with pytest.raises(AuditUnavailable) as not_ready:
                await log.check_ready()
            assert not_ready.value.reason == "audit_write_failed:OperationalError"
            assert metric(metrics, "cyphergate_audit_late_records_pending") == 1
            faults.times = 0  # space is back: the writer's own retry finds it, no traffic needed
            assert await settled(log) is None
        finally:
            await log.close()

    asyncio.run(go())
    found = [(r["request_id"], r["event"], r.get("late")) for r in records(path)]
    assert found == [("r1", "decision", None), ("r1", "outcome", True)]
    assert metric(metrics, "cyphergate_audit_late_records_total", result="written") == 1


def test_kept_outcomes_are_bounded_and_readiness_is_degraded_meanwhile(tmp_path: Path) -> None:
    faults, metrics = Injected(), Metrics()

    async def go() -> None:
        log = SQLiteAuditLog(
            tmp_path / "audit.sqlite3",
            faults=faults,
            metrics=metrics,
            late_capacity=2,
            retry_interval_s=30,  # no retry within this test: the kept ones stay kept
        )
        await log.open()
        try:
            faults.error, faults.times = sqlite3.OperationalError("disk I/O error"), 1
            results = await asyncio.gather(*(log.append_after(outcome(n)) for n in range(3)))
            assert results == [None, None, None]
            # The request's decision commits, the kept outcomes' next try after it fails: the
            # file takes new requests' records again, but two outcomes still wait.
            faults.skip, faults.times = 1, 1
            await log.append(event(4))
            assert await log.check_ready() == "degraded"
        finally:
            await log.close()

    asyncio.run(go())
    assert metric(metrics, "cyphergate_audit_late_records_total", result="lost") == 1


def test_verify_reports_decisions_whose_outcome_never_came(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "audit.sqlite3"

    async def go() -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            await log.append(event(1))  # ran and answered
            await log.append(outcome(1))
            await log.append(event(2))  # ran, and its outcome was lost with the process
            await log.append(dataclasses.replace(event(3), status=403))  # refused: no outcome
            late = dataclasses.replace(outcome(4), late=True)
            await log.append(event(4))  # its outcome came late: answered too
            await log.append(late)
        finally:
            await log.close()

    asyncio.run(go())
    with AuditReader(path) as reader:
        count, found = reader.unanswered("2026-01-01T00:00:03.000000Z")
        assert (count, [r["request_id"] for r in found]) == (1, ["r2"])
        assert reader.unanswered("2026-01-01T00:00:02.000000Z") == (0, [])  # not old enough
    assert main(["audit", "verify", "--log", str(path), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["unanswered"] == 1
    assert report["unanswered_examples"][0]["request_id"] == "r2"
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert "WARNING: 1 decision(s)" in capsys.readouterr().out


def test_a_writer_stuck_in_one_write_fails_liveness(tmp_path: Path) -> None:
    faults = Injected()

    async def go() -> None:
        log = SQLiteAuditLog(
            tmp_path / "audit.sqlite3", faults=faults, append_timeout_s=0.2, stall_after_s=1.0
        )
        await log.open()
        try:
            faults.hold.clear()  # the disk hangs in the middle of a write
            with pytest.raises(AuditUnavailable):
                await log.append(event(1))
            await log.check_alive()  # stuck for less than stall_after_s: alive
            await asyncio.sleep(1.0)
            with pytest.raises(AuditUnavailable) as stalled:
                await log.check_alive()
            assert stalled.value.reason == "audit_writer_stalled"
            faults.hold.set()  # the disk answers again
            await log.append(event(2))
            await log.check_alive()
        finally:
            faults.hold.set()
            await log.close()

    asyncio.run(go())
