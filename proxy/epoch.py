"""A schema epoch: a number that changes whenever a schema statement passes through the gateway.

Caches of plans (:class:`proxy.analysis.Analyzer`) compare the epoch they were filled under
with the current one on every lookup and start afresh when it moved. :class:`LocalEpoch` serves
one process; :class:`SharedEpoch` is eight bytes of a file that every worker of one replica maps
into memory (``server.workers``), so a schema statement on one worker empties the caches of all.
Reading it is a memory read, no system call: cheap enough for every statement. Replicas on other
machines share no file: there the caches' time to live (``neo4j.analysis_cache_ttl_s``) bounds
how long a plan from before a schema change is used.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from pathlib import Path

_SIZE = 8
_FORMAT = "<Q"


class LocalEpoch:
    """The epoch of one process."""

    def __init__(self) -> None:
        self._value = 0

    def current(self) -> int:
        return self._value

    def advance(self) -> None:
        self._value += 1


class SharedEpoch:
    """The epoch in a file mapped by every worker (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._map = mmap.mmap(fd, _SIZE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd  # kept for the lock of advance()

    @staticmethod
    def create(path: Path) -> None:
        """Make the file (zero) before the workers start."""
        path.write_bytes(bytes(_SIZE))

    def current(self) -> int:
        value: int = struct.unpack_from(_FORMAT, self._map)[0]
        return value

    def advance(self) -> None:
        # Schema statements are rare: a lock makes the read-increment-write of concurrent
        # workers add up (each reader then sees a number it has not seen before).
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            struct.pack_into(_FORMAT, self._map, 0, (self.current() + 1) % 2**64)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)


def schema_epoch(shared: Path | None) -> LocalEpoch | SharedEpoch:
    """The epoch in ``shared`` (the workers' file), or one of this process alone."""
    return LocalEpoch() if shared is None else SharedEpoch(shared)
