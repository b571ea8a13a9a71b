"""The audit log on a real filesystem that fills up or turns read-only (a tmpfs mounted here).

Writes fail with AuditUnavailable (so the gateway answers 503 and runs nothing; see
test_gateway.py), nothing half-written is left behind, and once space or write access returns
the log goes on and the chain verifies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.audit.reader import AuditReader, RecordFilter
from proxy.audit.record import ChainProblem
from proxy.audit.sqlite import SQLiteAuditLog
from proxy.errors import AuditUnavailable
from tests.audit.test_record import event


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def remount(mount_point: Path, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", str(mount_point)], check=True)


def test_full_and_read_only_disks_fail_closed_and_recover(small_disk: Path) -> None:
    path = small_disk / "audit.sqlite3"
    filler = small_disk / "filler"

    async def go() -> int:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            for n in range(20):
                await log.append(event(n))
            # Fill the disk to the last byte.
            with filler.open("wb", buffering=0) as out:  # unbuffered: closing flushes nothing
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError:
                    pass
            refused = 0
            kept = 0
            for n in range(200):
                try:
                    await log.append(event(n))
                except AuditUnavailable:
                    refused += 1
                    # An outcome of a statement that ran is never refused: kept, to write late.
                    done = dataclasses.replace(event(n), event="outcome", request_id=f"late{n}")
                    kept += await log.append_after(done) is None
            assert refused > 0, "a full disk never refused a write"
            assert kept > 0, "no outcome was refused by the full disk"
            with pytest.raises(AuditUnavailable):
                await log.check_ready()
            filler.unlink()
            await log.append(event(1))  # space is back: the log goes on
            for _ in range(100):  # and writes what it kept, right after
                if await log.check_ready() is None:
                    break
                await asyncio.sleep(0.05)
            assert await log.check_ready() is None
        finally:
            await log.close()

        # The filesystem turns read-only (a remount needs no writer holding files open).
        remount(small_disk, "ro")
        try:
            # The gateway's lifespan opens the log: it refuses to start, so nothing runs.
            with pytest.raises(AuditUnavailable):
                await SQLiteAuditLog(path).open()
        finally:
            remount(small_disk, "rw")
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            await log.append(event(3))
        finally:
            await log.close()
        return kept

    kept = asyncio.run(go())
    with AuditReader(path) as reader:
        steps = list(reader.verify())
    assert not [s for s in steps if isinstance(s, ChainProblem)]
    assert len(steps) >= 22
    with AuditReader(path) as reader:
        late = [r for r in reader.query(RecordFilter(event="outcome")) if r.get("late")]
    assert len(late) == kept  # every kept outcome, written once, marked late
