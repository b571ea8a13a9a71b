"""The audit log on a real filesystem that fills up or turns read-only (a tmpfs mounted here).

Writes fail with AuditUnavailable (so the gateway answers 503 and runs nothing; see
test_gateway.py), nothing half-written is left behind, and once space or write access returns
the log goes on and the chain verifies.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxy.audit.reader import AuditReader
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

    async def go() -> None:
        log = SQLiteAuditLog(path)
        await log.open()
        try:
            for n in range(20):
                await log.append(event(n))
            # Fill the disk to the last byte.
            with filler.open("wb") as out:
                try:
                    while True:
                        out.write(b"\0" * 65536)
                        out.flush()
                        os.fsync(out.fileno())
                except OSError:
                    pass
            refused = 0
            for n in range(200):
                try:
                    await log.append(event(n))
                except AuditUnavailable:
                    refused += 1
            assert refused > 0, "a full disk never refused a write"
            filler.unlink()
            await log.append(event(1))  # space is back: the log goes on
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

    asyncio.run(go())
    with AuditReader(path) as reader:
        steps = list(reader.verify())
    assert not [s for s in steps if isinstance(s, ChainProblem)]
    assert len(steps) >= 22
