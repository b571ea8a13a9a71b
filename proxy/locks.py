"""Exclusive ownership of a file by one process, with an OS lock (``flock``).

The audit chain and the leases record each belong to one gateway process: two processes
appending to one chain would fork it, and two sweeping one leases record would drop each
other's users. The lock lives in a file beside the one it guards (``<file>.lock``), never on the
SQLite file itself, whose own POSIX locks a second descriptor in the same process would release.
The kernel drops the lock when its process ends, however it ends, so a crash never leaves a
stale lock behind; the holder's pid is written in the file only to name it in the refusal.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path


def owned_files(path: Path) -> list[Path]:
    """Every file an owned SQLite database at ``path`` is kept in, resolved: itself, SQLite's
    own beside it, and the lock (:class:`ExclusiveFile`)."""
    return [
        Path(f"{path}{suffix}").resolve() for suffix in ("", "-wal", "-shm", "-journal", ".lock")
    ]


class FileTaken(Exception):
    """Another process holds the file; ``holder`` is its pid if it wrote one."""

    def __init__(self, path: Path, holder: int | None) -> None:
        self.path = path
        self.holder = holder
        by = f"process {holder}" if holder is not None else "another process"
        super().__init__(f"{path} is held by {by}")


class ExclusiveFile:
    """Holds ``<path>.lock`` until :meth:`release`; :meth:`acquire` raises :class:`FileTaken`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock now, or raise :class:`FileTaken` at once (never wait: a second process
        must refuse to start, not queue behind the first)."""
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _pid_in(fd)
            os.close(fd)
            raise FileTaken(self.path, holder) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the file go (closing the descriptor drops the lock)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _pid_in(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
